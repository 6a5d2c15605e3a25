"""One internal representation for BPE merge lists, plus pure helpers (no file I/O).

A :class:`MergeList` is an ordered list of merges ``(a, b)`` over *bytes*: merge ``r`` (1-based)
produces the token ``a + b``. The initial symbols are either the 256 single bytes (``base ==
"byte"``: GPT-2 style byte-level BPE, tiktoken) or single Unicode characters stored as their
UTF-8 bytes (``base == "char"``: SentencePiece BPE and its Hugging Face conversions).

A merge list is *valid* when every token is produced by exactly one merge and both parts of
merge ``r`` are base symbols or tokens produced by merges ``< r``. :func:`clean_merges` turns a
redundant list (converted SentencePiece lists list every split of a token) into a valid one and
:func:`merges_from_ranks` derives the merge list of a tiktoken rank table.

How a split is chosen when a token has several candidate merges
----------------------------------------------------------------
Both :func:`clean_merges` and :func:`merges_from_ranks` first *replay BPE* on the token's own
base symbols with the tokens produced before it, the way the target tokenizer encodes (at each
step, merge the adjacent pair whose concatenation was produced earliest; leftmost on ties). If
that ends in exactly two parts, they are the merge: this is how the token's own string is
segmented just before the token exists, i.e. the split that BPE training merged. Only if the
replay gets stuck (3+ parts, or a pair the list does not offer) do we fall back to the
"earliest-produced parts" rule: the candidate minimising ``(max(t_a, t_b), min(t_a, t_b),
position)`` where ``t_x`` is the step at which ``x`` was produced (0 for base symbols).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "MergeList",
    "MergeListError",
    "PretokenizerSpec",
    "UnsupportedTokenizerError",
    "byte_alphabet",
    "bytes_to_token_str",
    "bytes_to_unicode",
    "clean_merges",
    "merges_from_ranks",
    "token_str_to_bytes",
    "unicode_to_bytes",
    "validate_merges",
]


class MergeListError(ValueError):
    """A tokenizer file or merge list that cannot be turned into a valid merge list."""


class UnsupportedTokenizerError(MergeListError):
    """A well-formed tokenizer of a kind we do not handle (WordPiece, Unigram, ...)."""


@dataclass(frozen=True)
class PretokenizerSpec:
    """How the target splits text into pretokens (pairs never cross pretoken boundaries).

    kind:
      * ``"hf"``: ``hf_json`` is a serialized ``tokenizers.Tokenizer`` carrying the target's
        normalizer and pre-tokenizer (its model is an empty BPE). For byte-level targets the
        pre-tokenizer outputs byte-level unicode.
      * ``"regex"``: tiktoken style; ``pattern`` split with the ``regex`` module, then each
        piece's UTF-8 bytes mapped to byte-level unicode.
      * ``"sentencepiece"``: SentencePiece training: whitespace handling from the
        normalizer spec, spaces become ``▁``, and every sentence is split into words.

    ``keep_newline``: whether line-mode lines keep their trailing ``"\\n"`` (HF file training
    keeps it; SentencePiece strips it).

    Extra SentencePiece fields (beyond the four kinds' basics):
      * ``sp_words`` (``"hf"`` only): after the target's normalizer/pre-tokenizer, split each
        piece into SentencePiece training words (set for SentencePiece-converted files, which
        have no pre-tokenizer of their own; see :mod:`forensics.pretokenize`).
      * ``allow_whitespace_only_pieces``: SentencePiece's trainer flag. When true a run of
        ``▁`` stays in one word with the text that follows it (``"▁▁▁foo"`` is one word);
        when false every ``▁`` starts a new word.
      * ``split_by_whitespace`` (``"sentencepiece"``): false means the whole sentence is one
        pretoken.
    """

    kind: str
    hf_json: str | None = None
    pattern: str | None = None
    pattern_name: str | None = None
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True
    keep_newline: bool = True
    sp_words: bool = False
    allow_whitespace_only_pieces: bool = False
    split_by_whitespace: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ("hf", "regex", "sentencepiece"):
            raise ValueError(f"unknown pretokenizer kind {self.kind!r}")
        if self.kind == "hf" and not self.hf_json:
            raise ValueError("an 'hf' pretokenizer spec needs hf_json")
        if self.kind == "regex" and not self.pattern:
            raise ValueError("a 'regex' pretokenizer spec needs a pattern")


@dataclass(frozen=True)
class MergeList:
    """An ordered merge list (rank 1..N) with its base symbols and pretokenization."""

    merges: tuple[tuple[bytes, bytes], ...]
    base: str
    alphabet: frozenset[bytes]
    pretokenizer: PretokenizerSpec
    name: str = ""
    source_format: str = ""
    dropped_redundant: int = 0

    def __post_init__(self) -> None:
        if self.base not in ("byte", "char"):
            raise ValueError(f"base must be 'byte' or 'char', not {self.base!r}")

    def __len__(self) -> int:
        return len(self.merges)

    @property
    def tokens(self) -> tuple[bytes, ...]:
        """The produced tokens, in merge order."""
        return tuple(a + b for a, b in self.merges)


# --------------------------------------------------------------------------------------------
# GPT-2 byte-level alphabet
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _b2u() -> tuple[str, ...]:
    # Printable Latin-1 bytes map to themselves; the other 68 bytes (controls, space, 0x7F-0xA0,
    # 0xAD) map, in byte order, to U+0100, U+0101, ...
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    kept = set(keep)
    table = [""] * 256
    for b in keep:
        table[b] = chr(b)
    extra = 0
    for b in range(256):
        if b not in kept:
            table[b] = chr(0x100 + extra)
            extra += 1
    return tuple(table)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte → printable-character table (byte-level BPE vocabularies use it)."""
    return dict(enumerate(_b2u()))


@lru_cache(maxsize=1)
def _u2b() -> dict[str, int]:
    return {c: b for b, c in enumerate(_b2u())}


def unicode_to_bytes() -> dict[str, int]:
    """Inverse of :func:`bytes_to_unicode`: byte-level character → byte value."""
    return dict(_u2b())


def token_str_to_bytes(token: str) -> bytes:
    """A byte-level vocabulary string (``"Ġthe"``) → its bytes (``b" the"``)."""
    inv = _u2b()
    try:
        return bytes(inv[c] for c in token)
    except KeyError as e:
        raise MergeListError(
            f"{token!r} is not a byte-level token: character {e.args[0]!r} "
            f"(U+{ord(e.args[0]):04X}) is not in the GPT-2 byte alphabet"
        ) from None


def bytes_to_token_str(token: bytes) -> str:
    """Bytes → byte-level vocabulary string (inverse of :func:`token_str_to_bytes`)."""
    table = _b2u()
    return "".join(table[b] for b in token)


def byte_alphabet() -> frozenset[bytes]:
    """The 256 single bytes."""
    return frozenset(bytes([b]) for b in range(256))


# --------------------------------------------------------------------------------------------
# Validation and cleaning
# --------------------------------------------------------------------------------------------


def validate_merges(merges: Sequence[tuple[bytes, bytes]], alphabet: Iterable[bytes]) -> None:
    """Raise :class:`MergeListError` unless the list is valid (see module docstring)."""
    have = set(alphabet)
    for r, (a, b) in enumerate(merges, start=1):
        for part in (a, b):
            if part not in have:
                raise MergeListError(
                    f"merge {r} ({a!r}, {b!r}): part {part!r} is neither a base symbol nor "
                    "produced by an earlier merge"
                )
        tok = a + b
        if tok in have:
            raise MergeListError(
                f"merge {r} ({a!r}, {b!r}): token {tok!r} is already a base symbol or produced "
                "by an earlier merge"
            )
        have.add(tok)


def _base_symbols(token: bytes, alphabet: frozenset[bytes] | set[bytes]) -> list[bytes] | None:
    """Split a token into base symbols (single bytes, or UTF-8 characters); None if impossible."""
    singles = [token[i : i + 1] for i in range(len(token))]
    if all(s in alphabet for s in singles):
        return singles
    try:
        chars = [c.encode("utf-8") for c in token.decode("utf-8")]
    except UnicodeDecodeError:
        return None
    if all(c in alphabet for c in chars):
        return chars
    return None


def _replay_split(
    symbols: list[bytes],
    time_of: Mapping[bytes, int],
    allowed: Mapping[bytes, set[tuple[bytes, bytes]]] | None,
) -> tuple[bytes, bytes] | None:
    """Replay BPE (earliest-produced concatenation first, leftmost on ties) on ``symbols``
    using only the tokens in ``time_of`` (and, if ``allowed`` is given, only listed pairs).
    Returns the final two parts, or None when the replay does not end in two parts."""
    parts = list(symbols)
    inf = 1 << 62

    def rank(u: bytes, v: bytes) -> int:
        t = time_of.get(u + v)
        if t is None:
            return inf
        if allowed is not None and (u, v) not in allowed.get(u + v, ()):
            return inf
        return t

    ranks = [rank(parts[i], parts[i + 1]) for i in range(len(parts) - 1)]
    while len(parts) > 2:
        m = min(ranks)
        if m == inf:
            return None
        i = ranks.index(m)
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
        del ranks[i]
        if i > 0:
            ranks[i - 1] = rank(parts[i - 1], parts[i])
        if i < len(parts) - 1:
            ranks[i] = rank(parts[i], parts[i + 1])
    if len(parts) != 2:
        return None
    return parts[0], parts[1]


def clean_merges(
    merges: Sequence[tuple[bytes, bytes]],
    alphabet: Iterable[bytes],
    token_ids: Mapping[bytes, int] | None = None,
) -> tuple[list[tuple[bytes, bytes]], int]:
    """Make a merge list valid: each token produced by exactly one merge, parts produced first.

    Tokens are ordered by ``token_ids`` when given (vocabulary id of the produced token; for
    converted SentencePiece vocabularies the ids are the training order), else by the position
    of their first merge in ``merges``. For each token, the candidates are its listed merges
    whose parts are base symbols or tokens ordered before it; the kept one is chosen as in the
    module docstring (BPE replay, then earliest-produced parts). All other merges of that token
    are dropped as redundant.

    Returns ``(kept merges, number dropped)``. Raises :class:`MergeListError` when a token has
    no usable merge (a part is never produced, or only produced later) or when ``token_ids``
    lacks a produced token.
    """
    alpha = frozenset(alphabet)
    by_token: dict[bytes, list[tuple[int, bytes, bytes]]] = {}
    for i, (a, b) in enumerate(merges):
        by_token.setdefault(a + b, []).append((i, a, b))

    if token_ids is not None:
        missing = [(lst[0], tok) for tok, lst in by_token.items() if tok not in token_ids]
        if missing:
            (i, a, b), tok = min(missing)
            raise MergeListError(
                f"merge {i + 1} ({a!r}, {b!r}) produces {tok!r}, which has no vocabulary id"
            )
        order = sorted(by_token, key=lambda t: (token_ids[t], by_token[t][0][0]))
    else:
        order = list(by_token)  # dicts keep first-insertion order = first-listed order

    produced_anywhere = alpha | by_token.keys()
    time_of: dict[bytes, int] = dict.fromkeys(alpha, 0)
    allowed: dict[bytes, set[tuple[bytes, bytes]]] = {}
    kept: list[tuple[bytes, bytes]] = []
    for tok in order:
        cands = by_token[tok]
        if tok in alpha:
            continue  # a merge producing a base symbol adds nothing: all of them are redundant
        usable = [(i, a, b) for i, a, b in cands if a in time_of and b in time_of]
        if not usable:
            i, a, b = cands[0]
            for part in (a, b):
                if part not in produced_anywhere:
                    raise MergeListError(
                        f"merge {i + 1} ({a!r}, {b!r}): part {part!r} is never produced (not a "
                        "base symbol and no merge produces it)"
                    )
            raise MergeListError(
                f"merge {i + 1} ({a!r}, {b!r}): the parts of {tok!r} are only produced after "
                f"it (in the {'vocabulary-id' if token_ids is not None else 'listed'} order)"
            )
        if len(usable) == 1:
            _, a, b = usable[0]
        else:
            a, b = _choose_split(tok, usable, alpha, time_of, allowed)
        time_of[tok] = len(kept) + 1
        allowed[tok] = {(a2, b2) for _, a2, b2 in usable}
        kept.append((a, b))
    return kept, len(merges) - len(kept)


def _choose_split(
    tok: bytes,
    usable: list[tuple[int, bytes, bytes]],
    alpha: frozenset[bytes],
    time_of: Mapping[bytes, int],
    allowed: Mapping[bytes, set[tuple[bytes, bytes]]],
) -> tuple[bytes, bytes]:
    symbols = _base_symbols(tok, alpha)
    if symbols is not None:
        split = _replay_split(symbols, time_of, allowed)
        if split is not None and any((a, b) == split for _, a, b in usable):
            return split
    _, a, b = min(
        usable,
        key=lambda c: (
            max(time_of[c[1]], time_of[c[2]]),
            min(time_of[c[1]], time_of[c[2]]),
            c[0],
        ),
    )
    return a, b


# --------------------------------------------------------------------------------------------
# tiktoken ranks → merges
# --------------------------------------------------------------------------------------------


def merges_from_ranks(ranks: Mapping[bytes, int]) -> list[tuple[bytes, bytes]]:
    """Derive the merge list of a tiktoken-style rank table.

    For each token of length ≥ 2, in rank order, run tiktoken's BPE on its bytes using only
    tokens of smaller rank (merge the adjacent pair whose concatenation has the lowest rank,
    leftmost on ties) until two parts remain: they are the token's merge. If BPE stops with
    three or more parts, we take the two-way split ``(token[:k], token[k:])`` whose parts both
    have smaller ranks, minimising ``(max(rank_a, rank_b), min(rank_a, rank_b), k)``; if no
    such split exists, :class:`MergeListError`. Single-byte tokens are base symbols, not
    merges; so for cl100k (100,256 ranks) the result has 100,000 merges.
    """
    get = ranks.get
    inf = 1 << 62
    items = sorted((r, t) for t, r in ranks.items() if len(t) >= 2)
    out: list[tuple[bytes, bytes]] = []
    append = out.append
    for r, tok in items:
        n = len(tok)
        if n == 2:
            append((tok[:1], tok[1:]))
            continue
        parts = [tok[i : i + 1] for i in range(n)]
        pr = []
        for i in range(n - 1):
            x = get(tok[i : i + 2], inf)
            pr.append(x if x < r else inf)
        while len(parts) > 2:
            m = min(pr)
            if m == inf:
                break
            i = pr.index(m)
            parts[i] = parts[i] + parts[i + 1]
            del parts[i + 1]
            del pr[i]
            if i > 0:
                x = get(parts[i - 1] + parts[i], inf)
                pr[i - 1] = x if x < r else inf
            if i < len(pr):
                x = get(parts[i] + parts[i + 1], inf)
                pr[i] = x if x < r else inf
        if len(parts) == 2:
            append((parts[0], parts[1]))
            continue
        best = None
        for k in range(1, n):
            ra, rb = get(tok[:k], inf), get(tok[k:], inf)
            if ra < r and rb < r:
                key = (max(ra, rb), min(ra, rb), k)
                if best is None or key < best:
                    best = key
        if best is None:
            raise MergeListError(
                f"token {tok!r} (rank {r}) cannot be split into two tokens of smaller rank"
            )
        k = best[2]
        append((tok[:k], tok[k:]))
    return out
