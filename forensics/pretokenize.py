"""Pretokenization matching a target tokenizer, in the symbol space its BPE model consumes.

Pairs never cross pretoken boundaries, so counting pairs for a target needs the target's own
split. :class:`Pretokenizer` turns a :class:`~forensics.merges.PretokenizerSpec` into a
``pretokenize(text) -> list[str]`` function whose pretokens are:

* byte-level targets (``"regex"`` specs and byte-level ``"hf"`` specs): GPT-2 byte-level
  unicode strings (each UTF-8 byte → its :func:`~forensics.merges.bytes_to_unicode` char). For
  ``"hf"`` that is exactly ``pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))``.
* SentencePiece targets (``"sentencepiece"`` specs and SentencePiece-converted ``"hf"`` specs):
  plain strings with ``▁`` (U+2581) for spaces and the dummy prefix, split the way the
  SentencePiece *trainer* splits a sentence into words: a word starts at every ``▁``; with
  ``allow_whitespace_only_pieces`` a run of ``▁`` starts one word that also holds the text after
  it (``"▁▁▁foo▁bar"`` → ``["▁▁▁foo", "▁bar"]``), without it every ``▁`` starts its own word
  (``["▁", "▁", "▁foo", "▁bar"]``).

  A converted ``tokenizer.json`` (Llama 2: ``Prepend ▁`` + ``Replace " "→"▁"`` normalizer, no
  pre-tokenizer) hands the whole line to its BPE model as one word. Its vocabulary holds no
  token with a ``▁`` after a non-``▁`` character (SentencePiece forbids them), so splitting the
  line into SentencePiece words changes no encoding, and it removes the cross-word pairs
  (``("e", "▁")``) that the SentencePiece trainer never counted and could never merge. We
  therefore split (``spec.sp_words``); set it to false to get the raw whole-line behaviour.

  Caveat for callers counting pairs: SentencePiece's trainer also refuses pieces that mix
  Unicode scripts, contain digits (``split_digits``), exceed ``max_sentencepiece_length`` or
  hold a ``▁`` after other characters (``"▁▁foo"``); such pairs can be frequent but are never
  merge candidates. Pretokens may also contain characters outside the model's alphabet
  (SentencePiece byte-falls-back on them); they never merge.

Lines: HF's file-based training reads files line by line and keeps the ``"\\n"``; the
SentencePiece trainer reads lines without it. :meth:`Pretokenizer.lines` splits a document
accordingly (on ``"\\n"`` only); ``pretokenize`` itself treats its argument as one chunk.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import regex

from .merges import PretokenizerSpec, bytes_to_unicode

__all__ = [
    "CL100K_PATTERN",
    "GPT2_PATTERN",
    "O200K_PATTERN",
    "PATTERNS",
    "Pretokenizer",
    "resolve_pattern",
    "to_byte_level",
]

# Published tiktoken / GPT-2 split regexes (need the third-party ``regex`` module: \p{..}).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
)
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

#: canonical name → pattern (r50k and p50k use GPT-2's regex)
PATTERNS: dict[str, str] = {
    "r50k": GPT2_PATTERN,
    "p50k": GPT2_PATTERN,
    "cl100k": CL100K_PATTERN,
    "o200k": O200K_PATTERN,
}
_ALIASES = {
    "gpt2": "r50k",
    "r50k_base": "r50k",
    "p50k_base": "p50k",
    "p50k_edit": "p50k",
    "cl100k_base": "cl100k",
    "o200k_base": "o200k",
}


def resolve_pattern(pattern: str) -> tuple[str, str]:
    """A pattern name (``cl100k``, ``o200k``, ``r50k``, ``p50k``, ``gpt2``, or their
    ``*_base`` forms) or a raw regex → ``(pattern_name, regex)``; raw regexes are named
    ``"custom"``. Raises ``ValueError`` for a regex the ``regex`` module cannot compile."""
    key = pattern.strip().lower()
    key = _ALIASES.get(key, key)
    if key in PATTERNS:
        return key, PATTERNS[key]
    try:
        regex.compile(pattern)
    except regex.error as e:
        raise ValueError(
            f"pattern {pattern!r} is neither a known name nor a valid regex: {e}"
        ) from None
    return "custom", pattern


# byte value → code point, only for the 68 bytes whose byte-level char differs from latin-1
_TRANSLATE = {b: ord(c) for b, c in bytes_to_unicode().items() if ord(c) != b}
_IDENTITY_ASCII = re.compile(r"[\x21-\x7e]*")


def to_byte_level(piece: str) -> str:
    """A text piece → its UTF-8 bytes as GPT-2 byte-level unicode."""
    if _IDENTITY_ASCII.fullmatch(piece):
        return piece
    return piece.encode("utf-8").decode("latin-1").translate(_TRANSLATE)


_SP_WORDS_WS_RUNS = re.compile("▁+[^▁]*|[^▁]+")
_SP_WORDS_EACH_WS = re.compile("▁[^▁]*|[^▁]+")
_SPACES = re.compile(" +")


class Pretokenizer:
    """Pretokens of text in the target's BPE symbol space (see the module docstring)."""

    def __init__(self, spec: PretokenizerSpec):
        self.spec = spec
        self._normalizer = None
        self._pre = None
        self._regex = None
        self._sp_split = None
        if spec.kind in ("hf", "sentencepiece") and spec.hf_json:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_str(spec.hf_json)
            self._normalizer = tok.normalizer
            self._pre = tok.pre_tokenizer
        if spec.kind == "regex":
            self._regex = regex.compile(spec.pattern)
        if spec.kind == "sentencepiece" or (spec.kind == "hf" and spec.sp_words):
            words = _SP_WORDS_WS_RUNS if spec.allow_whitespace_only_pieces else _SP_WORDS_EACH_WS
            self._sp_split = words.findall
        if spec.kind == "sentencepiece" and not spec.split_by_whitespace:
            self._sp_split = None
        self._impl = {
            "regex": self._pretokenize_regex,
            "hf": self._pretokenize_hf,
            "sentencepiece": self._pretokenize_sp,
        }[spec.kind]

    @classmethod
    def from_spec(cls, spec: PretokenizerSpec) -> Pretokenizer:
        return cls(spec)

    def __getstate__(self) -> dict:  # picklable (Ray / multiprocessing): rebuilt from the spec
        return {"spec": self.spec}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["spec"])

    @property
    def keep_newline(self) -> bool:
        """Whether line-mode training lines keep their trailing ``"\\n"``."""
        return self.spec.keep_newline

    # -- one chunk ------------------------------------------------------------------------
    def pretokenize(self, text: str) -> list[str]:
        """The pretokens of one text chunk, in the BPE model's symbol space."""
        return self._impl(text)

    def _pretokenize_regex(self, text: str) -> list[str]:
        return [to_byte_level(p) for p in self._regex.findall(text)]

    def _pretokenize_hf(self, text: str) -> list[str]:
        if self._normalizer is not None:
            text = self._normalizer.normalize_str(text)
        if self._pre is not None:
            pieces = [p for p, _ in self._pre.pre_tokenize_str(text)]
        else:
            pieces = [text]
        if self._sp_split is not None:
            split = self._sp_split
            return [w for p in pieces for w in split(p)]
        return [p for p in pieces if p]

    def _pretokenize_sp(self, text: str) -> list[str]:
        spec = self.spec
        if self._normalizer is not None:
            text = self._normalizer.normalize_str(text)
        if spec.remove_extra_whitespaces:
            text = _SPACES.sub(" ", text).strip(" ")
        if not text:
            return []
        if spec.add_dummy_prefix:
            text = " " + text
        text = text.replace(" ", "▁")
        if self._sp_split is None:
            return [text]
        return self._sp_split(text)

    # -- many chunks ----------------------------------------------------------------------
    def pretokenize_many(self, texts: Iterable[str]) -> list[str]:
        """Pretokens of many chunks, flattened (no pretoken spans two chunks)."""
        out: list[str] = []
        extend = out.extend
        f = self.pretokenize
        for t in texts:
            extend(f(t))
        return out

    def lines(self, text: str) -> list[str]:
        """Split a document into training lines on ``"\\n"``: with the ``"\\n"`` kept when
        :attr:`keep_newline` (HF file training), without it otherwise (SentencePiece)."""
        if self.keep_newline:
            return _LINES_KEEP.findall(text)
        parts = text.split("\n")
        if parts and parts[-1] == "":
            parts.pop()
        return parts

    def pretokenize_document(self, text: str) -> list[str]:
        """``pretokenize_many(self.lines(text))``."""
        return self.pretokenize_many(self.lines(text))


_LINES_KEEP = re.compile(r"[^\n]*\n|[^\n]+")
