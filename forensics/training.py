"""Controlled BPE training: the target tokenizers of the demo, the tests and experiments.

:func:`train_bpe` trains a byte-level BPE with Hugging Face ``tokenizers`` the way its
file-based training does it: every document is fed **line by line**, each line keeping its
``"\\n"``, so that no pretoken spans a newline. Lines are cut on ``"\\n"`` only (like HF's file
reader, and like :meth:`forensics.pretokenize.Pretokenizer.lines`), not on the other line
separators ``str.splitlines`` knows (``\\r``, ``\\x0b``, ``\\u2028``, ...).

:func:`mixture_sample` builds the training text of a known mixture from per-category
documents and returns the byte proportions actually used (the ground truth an inference is
scored against).
"""

from __future__ import annotations

import heapq
import itertools
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence

__all__ = [
    "PRETOKENIZERS",
    "TRAINERS",
    "byte_level_tokenizer",
    "continue_bpe",
    "mixture_sample",
    "split_lines",
    "train_bpe",
    "train_sentencepiece_bpe",
]

#: pre-tokenizers :func:`train_bpe` knows (see :func:`byte_level_tokenizer`)
PRETOKENIZERS = ("bytelevel-digits", "gpt2", "cl100k")
#: every training setting of the controlled experiments (``sentencepiece``: SentencePiece BPE)
TRAINERS = (*PRETOKENIZERS, "sentencepiece")

_LINES = re.compile(r"[^\n]*\n|[^\n]+")


def split_lines(text: str) -> list[str]:
    """``text`` cut after every ``"\\n"`` (kept); a last line without one is kept too."""
    return _LINES.findall(text)


def _lines(texts: Sequence[str]) -> Iterator[str]:
    for t in texts:
        yield from _LINES.findall(t)


def byte_level_tokenizer(pretokenizer: str = "bytelevel-digits", model=None):
    """An HF ``Tokenizer`` with a byte-level pre-tokenizer and decoder (``model``: default an
    empty BPE):

    * ``"bytelevel-digits"``: ``Sequence[Digits(individual_digits=True),
      ByteLevel(add_prefix_space=False)]`` (the setting of Hayase et al.'s controlled runs);
    * ``"gpt2"``: ``ByteLevel(add_prefix_space=False)`` (GPT-2's regex);
    * ``"cl100k"``: ``Sequence[Split(cl100k regex, isolated), ByteLevel(use_regex=False)]``
      (how ``tokenizer.json`` files of cl100k-style models such as Llama 3 write it).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    if pretokenizer not in PRETOKENIZERS:
        raise ValueError(f"pretokenizer must be one of {PRETOKENIZERS}, not {pretokenizer!r}")
    tok = Tokenizer(model if model is not None else models.BPE())
    if pretokenizer == "bytelevel-digits":
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False),
            ]
        )
    elif pretokenizer == "cl100k":
        from .pretokenize import CL100K_PATTERN

        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(CL100K_PATTERN), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def train_bpe(
    texts: Sequence[str],
    vocab_size: int,
    *,
    pretokenizer: str = "bytelevel-digits",
    min_frequency: int = 0,
) -> str:
    """Train a byte-level BPE on ``texts`` and return its ``tokenizer.json`` (a string).

    * ``pretokenizer``: see :func:`byte_level_tokenizer`;
    * the initial alphabet is all 256 bytes, so the merge list starts from single bytes;
    * the texts are fed line by line (``"\\n"`` kept), as ``Tokenizer.train(files)`` does;
    * no special tokens; decoder ``ByteLevel``. ``vocab_size`` counts the 256 bytes, so the
      tokenizer has at most ``vocab_size - 256`` merges (fewer if the text runs out of pairs).
    """
    from tokenizers import pre_tokenizers, trainers

    if vocab_size < 257:
        raise ValueError(f"vocab_size must exceed the 256 byte symbols, got {vocab_size}")
    tok = byte_level_tokenizer(pretokenizer)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(_lines(texts), trainer=trainer)
    return tok.to_str()


def train_sentencepiece_bpe(texts: Sequence[str], vocab_size: int) -> bytes:
    """Train a SentencePiece BPE model (character base, whitespace as ``▁``, byte fallback off)
    on ``texts``, fed line by line, and return the serialized ``.model``.

    ``vocab_size`` counts the characters and the three special pieces (``<unk> <s> </s>``).
    SentencePiece refuses a size the text cannot reach (``ValueError``/``RuntimeError`` with its
    message).
    """
    import io

    import sentencepiece as spm

    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=(ln.rstrip("\n") for ln in _lines(texts)),
        model_writer=out,
        model_type="bpe",
        vocab_size=vocab_size,
        character_coverage=1.0,
        max_sentence_length=1 << 16,
        input_sentence_size=0,
        minloglevel=2,
        num_threads=1,
    )
    return out.getvalue()


def _n_bytes(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def mixture_sample(
    texts_by_cat: Mapping[str, Sequence[str]],
    weights: Mapping[str, float],
    total_bytes: int,
) -> tuple[list[str], dict[str, int]]:
    """Whole documents of each category, in order, up to its share of ``total_bytes``.

    Category ``c`` gets the target ``weights[c] / Σ weights · total_bytes`` bytes. Its
    documents are taken in order while the running total is below the target; the document
    that crosses the target is kept only if that leaves the total closer to the target than
    stopping before it (so a tiny share may get no document at all). When a category runs out
    of documents it contributes what it has. Empty documents are skipped.

    Returns ``(documents, true_bytes)``: the documents category by category (in the order of
    ``weights``), and the UTF-8 bytes actually taken from each category — the true mixture,
    which can differ from ``weights`` by the granularity of whole documents.
    """
    if total_bytes <= 0:
        raise ValueError(f"total_bytes must be positive, got {total_bytes}")
    missing = [c for c in weights if c not in texts_by_cat]
    if missing:
        raise KeyError(f"no documents for categories {missing}")
    if any(w < 0 for w in weights.values()):
        raise ValueError("weights must be non-negative")
    wsum = float(sum(weights.values()))
    if wsum <= 0:
        raise ValueError("weights must not all be zero")
    docs: list[str] = []
    true_bytes: dict[str, int] = {}
    for cat, w in weights.items():
        target = w / wsum * total_bytes
        got = 0
        for text in texts_by_cat[cat]:
            if got >= target:
                break
            n = _n_bytes(text)
            if n == 0:
                continue
            if got + n > target and (got + n - target) >= (target - got):
                break
            docs.append(text)
            got += n
        true_bytes[cat] = got
    return docs, true_bytes


def continue_bpe(
    merges: Sequence[tuple[bytes, bytes]],
    base: str,
    alphabet: Sequence[bytes] | frozenset[bytes] | None,
    word_counts: Mapping[str, int],
    n_new: int,
) -> list[tuple[bytes, bytes]]:
    """Continue BPE training from an existing merge list: ``n_new`` further merges.

    ``word_counts`` are pretokens in the model's symbol space (byte-level unicode for byte
    models), as :class:`~forensics.pretokenize.Pretokenizer` produces them. Every word is first
    encoded with the existing merges (so they are pre-applied), then the most frequent adjacent
    pair is merged, repeatedly. Ties go to the pair of smaller token ids in the numbering of
    Hugging Face's trainer (base symbols sorted by their symbol-space character, then merges in
    order), as ``tokenizers``' BpeTrainer breaks them. Pairs whose merged token already exists
    are skipped, so that the extended list stays a valid merge list. Stops early when no pair
    is left. Returns the new merges only.
    """
    from .counting import BPEModel

    model = BPEModel(merges, base, alphabet)
    tokens: list[bytes] = list(model.tokens)
    known = set(tokens)
    words = [w for w in word_counts if w]
    freqs = [int(word_counts[w]) for w in words]
    seqs = model.encode_words(words)
    counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)
    for wi, seq in enumerate(seqs):
        f = freqs[wi]
        for p in itertools.pairwise(seq):
            counts[p] += f
            where[p].add(wi)
    # HF ids: base symbols ranked by their symbol-space string; merged tokens keep their ids
    base_rank = sorted(range(model.n_base), key=lambda i: model.symbol_str(tokens[i]))
    hf = list(range(len(tokens)))
    for r, i in enumerate(base_rank):
        hf[i] = r
    heap = [(-c, hf[a], hf[b], a, b) for (a, b), c in counts.items() if c > 0]
    heapq.heapify(heap)
    new: list[tuple[bytes, bytes]] = []
    while heap and len(new) < n_new:
        negc, _, _, a, b = heapq.heappop(heap)
        c = counts.get((a, b), 0)
        if c <= 0:
            continue
        if c != -negc:  # stale entry: re-queue with the current count
            heapq.heappush(heap, (-c, hf[a], hf[b], a, b))
            continue
        merged = tokens[a] + tokens[b]
        if merged in known:
            counts[(a, b)] = 0
            continue
        new_id = len(tokens)
        tokens.append(merged)
        hf.append(new_id)
        known.add(merged)
        new.append((tokens[a], tokens[b]))
        changed: set[tuple[int, int]] = set()
        for wi in where.pop((a, b), ()):
            seq, f = seqs[wi], freqs[wi]
            out: list[int] = []
            i = 0
            while i < len(seq):
                if i + 1 < len(seq) and seq[i] == a and seq[i + 1] == b:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            if len(out) == len(seq):
                continue  # a stale index: the pair is gone from this word
            for p in itertools.pairwise(seq):
                counts[p] -= f
                changed.add(p)
            for p in itertools.pairwise(out):
                counts[p] += f
                where[p].add(wi)
                changed.add(p)
            seqs[wi] = out
        counts.pop((a, b), None)
        for p in changed:
            c2 = counts.get(p, 0)
            if c2 > 0:
                heapq.heappush(heap, (-c2, hf[p[0]], hf[p[1]], p[0], p[1]))
    return new
