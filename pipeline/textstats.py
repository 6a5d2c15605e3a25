"""Vectorised signals of datatrove's Gopher and FineWeb filters over an Arrow batch.

datatrove's ``GopherRepetitionFilter``, ``GopherQualityFilter`` and ``FineWebQualityFilter``
run per document in Python (string joins for every n-gram, sets, ``Counter``); on Korean text
the repetition filter alone ran at ~2.5 MB/s/core. This module computes the same quantities for
a whole batch with ``pyarrow.compute`` kernels (splitting, regex matching, dictionary encoding
in C++) and numpy, with datatrove's exact semantics:

* words are ``str.split()`` (Arrow's whitespace set is Python's: checked over every code point
  in the tests), lines ``str.split("\\n")``, ``re.split("\\n+")``, ``str.splitlines()`` and
  paragraphs ``re.split("\\n{2,}", text.strip())``, each reproduced by an equivalent Arrow split;
* "is a duplicate of an earlier element" comes from dictionary-encoding the elements (Arrow
  assigns codes in order of first appearance), keyed with the document index;
* word n-grams get *exact* ids by pairing ids round by round (``(id_{n-1} << 32) | word``,
  dictionary-encoded again), so two windows share an id iff their word tuples are equal. The
  "top n-gram" is the most frequent one, ties broken by first appearance (``Counter.
  most_common(1)``), and its length counts the joining spaces, as ``" ".join`` does;
* datatrove's ``find_all_duplicate`` joins n-grams *without* separator, so two different word
  tuples with the same concatenation ("ab c" / "a bc") count as equal there. A polynomial hash
  of the concatenated bytes finds documents where that could happen (a hash class holding
  several tuple classes): those documents, and only those, are computed by datatrove's own
  function, so the result is exact either way. The greedy scan itself (skip ``n`` words after
  a duplicate) runs in Python over the *repeated* positions only, which are few in normal text;
* "alphabetic" and "whitespace" are Python's ``str.isalpha``/``str.isspace`` (RE2 classes
  built from the running Python's Unicode tables, not RE2's own, which is a newer Unicode).

The filters in :mod:`pipeline.filters` use these signals; ``tests/test_pipeline_fastfilters.py``
checks them and the decisions against datatrove's implementation on real documents.
"""

from __future__ import annotations

import functools
from bisect import bisect_right
from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "Lists",
    "NGrams",
    "Words",
    "as_text_array",
    "dup_elements",
    "python_alpha_class",
    "python_space_class",
    "re2_class",
    "re2_literal",
    "split_lines_keep_empty",
    "split_paragraphs",
    "split_regex_lines",
    "splitlines",
]


def as_text_array(text: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous ``string`` array, nulls as empty strings."""
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks() if text.num_chunks != 1 else text.chunk(0)
    if pa.types.is_large_string(text.type):
        text = text.cast(pa.string())
    if text.null_count:
        text = pc.fill_null(text, "")
    return text


# --------------------------------------------------------------------------------------
# RE2 character classes with Python's Unicode semantics


def _ranges(cps: Iterable[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for c in cps:
        if out and out[-1][1] == c - 1:
            out[-1] = (out[-1][0], c)
        else:
            out.append((c, c))
    return out


def re2_class(cps: Iterable[int]) -> str:
    """An RE2 character class (``[...]``) matching exactly the code points ``cps``."""
    parts = []
    for a, b in _ranges(sorted(set(cps))):
        parts.append(f"\\x{{{a:x}}}" if a == b else f"\\x{{{a:x}}}-\\x{{{b:x}}}")
    return "[" + "".join(parts) + "]"


def re2_literal(s: str) -> str:
    """``s`` as an RE2 literal (every character escaped by code point)."""
    return "".join(f"\\x{{{ord(c):x}}}" for c in s)


@functools.cache
def python_space_class() -> str:
    """RE2 class of the characters for which Python's ``str.isspace()`` is true."""
    return re2_class(c for c in range(0x3001) if chr(c).isspace())


@functools.cache
def python_alpha_class() -> str:
    """RE2 class of the characters for which Python's ``str.isalpha()`` is true (this
    Python's Unicode version; RE2's ``\\pL`` follows a newer one and differs on ~5,000 code
    points)."""
    return re2_class(c for c in range(0x110000) if chr(c).isalpha())


# --------------------------------------------------------------------------------------
# Splits


def _np(arr: pa.Array | pa.ChunkedArray, dtype=None) -> np.ndarray:
    out = arr.to_numpy(zero_copy_only=False)
    return out.astype(dtype, copy=False) if dtype is not None else out


class Lists:
    """A split of each document into elements: flat ``values`` (string array), ``doc`` (the
    document of each element), ``counts`` per document, ``n_docs``."""

    def __init__(self, values: pa.Array, doc: np.ndarray, n_docs: int) -> None:
        self.values = values
        self.doc = doc
        self.n_docs = n_docs
        self.counts = np.bincount(doc, minlength=n_docs).astype(np.int64)

    @classmethod
    def from_list_array(cls, lists: pa.Array, n_docs: int, drop_empty: bool = False) -> Lists:
        if isinstance(lists, pa.ChunkedArray):
            lists = lists.combine_chunks()
        values = lists.flatten()
        doc = _np(pc.list_parent_indices(lists), np.int64)
        if drop_empty and len(values):
            keep = pc.greater(pc.binary_length(values), 0)
            if not pc.all(keep).as_py():
                doc = doc[_np(keep, bool)]
                values = values.filter(keep)
        return cls(values, doc, n_docs)

    @functools.cached_property
    def char_len(self) -> np.ndarray:
        return _np(pc.utf8_length(self.values), np.int64)

    def per_doc_sum(self, mask: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Per-document sum of ``weights`` (or count) over the elements where ``mask``."""
        w = None if weights is None else weights[mask]
        out = np.bincount(self.doc[mask], weights=w, minlength=self.n_docs)
        return np.rint(out).astype(np.int64) if w is not None else out.astype(np.int64)


def split_paragraphs(text: pa.Array) -> pa.Array:
    """``re.split(r"\\n{2,}", t.strip())`` for every text (a list array)."""
    return pc.split_pattern_regex(pc.utf8_trim_whitespace(text), "\n{2,}")


def split_regex_lines(text: pa.Array) -> pa.Array:
    """``re.split("\\n+", t)`` for every text."""
    return pc.split_pattern_regex(text, "\n+")


def split_lines_keep_empty(text: pa.Array) -> pa.Array:
    """``t.split("\\n")`` for every text."""
    return pc.split_pattern(text, "\n")


# the separators of str.splitlines() (\r\n first: one separator)
_SPLITLINES_RE = "\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]"
_OTHER_SEPS_RE = "[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]"
_ENDS_WITH_SEP_RE = "(?:[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029])$"


def splitlines(text: pa.Array) -> Lists:
    """``t.splitlines()`` for every text: a split on the same separators, without the empty
    piece after a final separator (and none at all for an empty text)."""
    n = len(text)
    if pc.any(pc.match_substring_regex(text, _OTHER_SEPS_RE)).as_py():
        lists = pc.split_pattern_regex(text, _SPLITLINES_RE)
    else:  # only \n separators (normalised text): a plain split is 10x faster
        lists = pc.split_pattern(text, "\n")
    values = lists.flatten()
    doc = _np(pc.list_parent_indices(lists), np.int64)
    # the last piece of a text that ends with a separator (or is empty) is dropped
    drop_last = _np(pc.match_substring_regex(text, _ENDS_WITH_SEP_RE), bool) | (
        _np(pc.binary_length(text), np.int64) == 0
    )
    if drop_last.any():
        lens = _np(pc.list_value_length(lists), np.int64)
        last = np.cumsum(lens) - 1
        keep = np.ones(len(values), bool)
        keep[last[drop_last]] = False
        values = values.filter(pa.array(keep))
        doc = doc[keep]
    return Lists(values, doc, n)


def _first_flags(codes: np.ndarray) -> np.ndarray:
    """For codes assigned in order of first appearance: True at each code's first position."""
    first = np.empty(len(codes), bool)
    if len(codes):
        first[0] = True
        first[1:] = codes[1:] > np.maximum.accumulate(codes)[:-1]
    return first


def _encode(values: pa.Array | np.ndarray) -> np.ndarray:
    """Dictionary codes (int64) in order of first appearance."""
    if isinstance(values, np.ndarray):
        values = pa.array(values)
    if not len(values):
        return np.empty(0, np.int64)
    return _np(pc.dictionary_encode(values).indices, np.int64)


def dup_elements(lists: Lists) -> tuple[np.ndarray, np.ndarray]:
    """datatrove's ``find_duplicates`` per document: (duplicate elements, their characters)."""
    if not len(lists.values):
        z = np.zeros(lists.n_docs, np.int64)
        return z, z.copy()
    ids = _encode(lists.values)
    key = (lists.doc.astype(np.uint64) << np.uint64(32)) | ids.astype(np.uint64)
    dup = ~_group(key)[2]
    return lists.per_doc_sum(dup), lists.per_doc_sum(dup, lists.char_len.astype(np.float64))


class Words(Lists):
    """``t.split()`` for every text (Arrow keeps an empty word at each end: dropped)."""

    def __init__(self, text: pa.Array) -> None:
        lists = pc.utf8_split_whitespace(text)
        base = Lists.from_list_array(lists, len(text), drop_empty=True)
        super().__init__(base.values, base.doc, base.n_docs)
        self.starts = np.zeros(self.n_docs + 1, np.int64)
        np.cumsum(self.counts, out=self.starts[1:])

    def python_words(self, d: int) -> list[str]:
        a, b = int(self.starts[d]), int(self.starts[d + 1])
        return self.values.slice(a, b - a).to_pylist()


# polynomial hash of bytes, mod 2^64 (a pre-check only: see NGrams.all_duplicate_chars)
_BYTE_VALUES = np.random.default_rng(0x5EED).integers(1, 2**63, 256, dtype=np.uint64)
_BASE = 0x100000001B3 | 1
_BASE_INV = pow(_BASE, -1, 2**64)
_M_DOC = np.uint64(0x9E3779B97F4A7C15)


_POWERS: dict[int, np.ndarray] = {}


def _powers(base: int, n: int) -> np.ndarray:
    """``base**j mod 2^64`` for ``j < n`` (a process-wide table, grown on demand)."""
    have = _POWERS.get(base)
    if have is None or len(have) < n:
        size = max(n, 1 << 20, 2 * len(have) if have is not None else 0)
        p = np.full(size, base, np.uint64)
        p[0] = 1
        with np.errstate(over="ignore"):
            _POWERS[base] = have = np.multiply.accumulate(p, dtype=np.uint64)
    return have[:n]


def _group(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact grouping of equal keys: ``(group id, group size, is first occurrence)`` per
    element (group ids in key order; "first" = smallest index of its group)."""
    m = len(keys)
    if not m:
        e = np.empty(0, np.int64)
        return e, e.copy(), np.empty(0, bool)
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    new = np.empty(m, bool)
    new[0] = True
    np.not_equal(sk[1:], sk[:-1], out=new[1:])
    gid = np.empty(m, np.int64)
    gid[order] = np.cumsum(new) - 1
    sizes = np.diff(np.append(np.flatnonzero(new), m))
    first = np.zeros(m, bool)
    first[order[new]] = True
    return gid, sizes[gid], first


class _Level:
    """The ``n``-word windows that can be repeated (both of their ``n-1``-word sub-windows
    are), grouped exactly: ``pos`` (flat word index of the window start), ``gid``, ``size``
    (occurrences in the document), ``first`` (first occurrence in the document)."""

    __slots__ = ("first", "gid", "pos", "size")

    def __init__(self, pos, gid, size, first) -> None:
        self.pos, self.gid, self.size, self.first = pos, gid, size, first


class NGrams:
    """Word n-grams of a :class:`Words` split: exact grouping and datatrove's statistics.

    Level 1 groups the (document, word) pairs; level ``n`` groups only the windows whose two
    ``n-1``-word sub-windows are both repeated in the document (any other window occurs
    once), keyed by (group of the ``n-1``-word prefix, last word): exact, and the candidate
    sets shrink quickly with ``n``."""

    def __init__(self, words: Words) -> None:
        self.words = w = words
        n_words = len(w.values)
        self.n_words = n_words
        pos_in_doc = np.arange(n_words, dtype=np.int64) - w.starts[w.doc]
        self.remaining = w.counts[w.doc] - pos_in_doc  # words from here to the doc end
        self.word_id = _encode(w.values) if n_words else np.empty(0, np.int64)
        self.char_prefix = np.zeros(n_words + 1, np.int64)
        np.cumsum(w.char_len, out=self.char_prefix[1:])
        key = (w.doc.astype(np.uint64) << np.uint64(32)) | self.word_id.astype(np.uint64)
        self._levels = {1: _Level(np.arange(n_words, dtype=np.int64), *_group(key))}
        self._hash_prefix: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def level(self, n: int) -> _Level:
        if n not in self._levels:
            prev = self.level(n - 1)
            rep = np.zeros(self.n_words + 1, bool)
            rep[prev.pos[prev.size >= 2]] = True
            cand = np.flatnonzero((self.remaining >= n) & rep[:-1] & rep[1:])
            g = np.full(self.n_words, -1, np.int64)
            g[prev.pos] = prev.gid
            key = (g[cand].astype(np.uint64) << np.uint64(32)) | self.word_id[cand + n - 1].astype(
                np.uint64
            )
            self._levels[n] = _Level(cand, *_group(key))
        return self._levels[n]

    def _window_chars(self, pos: np.ndarray, n: int) -> np.ndarray:
        return self.char_prefix[pos + n] - self.char_prefix[pos]

    def top_duplicate_chars(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """datatrove's ``find_top_duplicate(get_n_grams(words, n))`` per document:
        ``(chars, has_ngrams)`` -- length of the most frequent ``" ".join`` n-gram (first
        appearance wins ties: ``Counter.most_common(1)``) times its count; ``has_ngrams``
        False where the document has fewer than ``n`` words (datatrove skips the check)."""
        w = self.words
        has = w.counts >= n
        chars = np.zeros(w.n_docs, np.int64)
        d_has = np.flatnonzero(has)
        # no repeated n-gram: the first window, once
        chars[d_has] = self._window_chars(w.starts[d_has], n) + (n - 1)
        lv = self.level(n)
        sel = lv.first & (lv.size >= 2)
        if sel.any():
            p, c = lv.pos[sel], lv.size[sel]
            d = w.doc[p]
            order = np.lexsort((p, -c, d))  # per document: largest count, then earliest
            d_o = d[order]
            best = order[np.r_[True, d_o[1:] != d_o[:-1]]]
            chars[d[best]] = c[best] * (self._window_chars(p[best], n) + (n - 1))
        return chars, has

    def _concat_hash(self, pos: np.ndarray, n: int) -> np.ndarray:
        """Polynomial hash (mod 2^64) of the bytes of ``"".join(window)``."""
        if self._hash_prefix is None:
            vals = self.words.values
            offs = np.frombuffer(
                vals.buffers()[1], np.int32, count=len(vals) + 1, offset=vals.offset * 4
            ).astype(np.int64)
            data = vals.buffers()[2]
            raw = (
                np.frombuffer(data, np.uint8)[offs[0] : offs[-1]]
                if data is not None
                else np.empty(0, np.uint8)
            )
            offs = offs - offs[0]
            with np.errstate(over="ignore"):
                x = _BYTE_VALUES[raw] * _powers(_BASE, len(raw))
                prefix = np.zeros(len(raw) + 1, np.uint64)
                np.cumsum(x, out=prefix[1:], dtype=np.uint64)
            self._hash_prefix = (offs, prefix, _powers(_BASE_INV, len(raw) + 1))
        offs, prefix, inv = self._hash_prefix
        s, e = offs[pos], offs[pos + n]
        with np.errstate(over="ignore"):
            return (prefix[e] - prefix[s]) * inv[s]

    def all_duplicate_chars(self, n: int, docs: np.ndarray | None = None) -> np.ndarray:
        """datatrove's ``find_all_duplicate(words, n)`` per document (0 for documents not in
        the boolean mask ``docs``).

        The scan: at each position, a window already seen adds its characters (joined without
        separator) and skips ``n`` positions; a new one is remembered and the scan moves on
        by one. Only repeated windows can change anything, so the scan visits those; a first
        occurrence counts as remembered unless a skip covered it.

        datatrove compares ``"".join(window)`` strings, so two different word tuples with
        the same concatenation ("ab c" / "a bc") are equal there but not in the exact tuple
        grouping: documents where a hash of the concatenations has fewer distinct values than
        there are distinct tuples are computed with datatrove's own function instead."""
        w = self.words
        out = np.zeros(w.n_docs, np.int64)
        todo = w.counts >= n
        if docs is not None:
            todo &= docs
        if not todo.any():
            return out
        lv = self.level(n)
        lv_doc = w.doc[lv.pos]
        # concatenation check over every window of the documents to do
        win = np.flatnonzero((self.remaining >= n) & todo[w.doc])
        wdoc = w.doc[win]
        h = self._concat_hash(win, n) ^ (wdoc.astype(np.uint64) * _M_DOC)
        repeats = np.bincount(lv_doc[~lv.first], minlength=w.n_docs)
        n_tuples = np.bincount(wdoc, minlength=w.n_docs) - repeats
        hs = np.sort(h)
        n_concat_total = int(np.count_nonzero(hs[1:] != hs[:-1])) + 1 if len(hs) else 0
        if n_concat_total != int(n_tuples[todo].sum()):
            _, _, hfirst = _group(h)
            ambiguous = todo & (np.bincount(wdoc[hfirst], minlength=w.n_docs) != n_tuples)
            if ambiguous.any():
                from datatrove.pipeline.filters.gopher_repetition_filter import (
                    find_all_duplicate,
                )

                for d in np.flatnonzero(ambiguous):
                    out[d] = find_all_duplicate(w.python_words(int(d)), n)
                todo &= ~ambiguous
        cand = np.flatnonzero(~lv.first & todo[lv_doc])
        if not len(cand):
            return out
        # first position of every group that has a repeat
        first_of_gid = np.full(int(lv.gid.max()) + 1, -1, np.int64)
        first_of_gid[lv.gid[lv.first]] = lv.pos[lv.first]
        p = lv.pos[cand]
        cdoc = lv_doc[cand]
        bounds = np.flatnonzero(np.r_[True, cdoc[1:] != cdoc[:-1], True])
        start = w.starts[cdoc]
        c_pos = (p - start).tolist()
        c_id = lv.gid[cand].tolist()
        c_first = (first_of_gid[lv.gid[cand]] - start).tolist()
        c_len = self._window_chars(p, n).tolist()
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            out[cdoc[a]] = _scan(c_pos[a:b], c_id[a:b], c_first[a:b], c_len[a:b], n)
        return out


def _scan(
    positions: Sequence[int],
    ids: Sequence[int],
    firsts: Sequence[int],
    lengths: Sequence[int],
    n: int,
) -> int:
    """datatrove's greedy duplicate scan over the repeated windows of one document (in
    position order): ``firsts`` the position of each window's first occurrence."""
    hits: list[int] = []
    present: set[int] = set()
    nxt = 0
    total = 0
    for c, v, f, length in zip(positions, ids, firsts, lengths, strict=True):
        if c < nxt:
            continue  # skipped after a duplicate
        if v in present:
            seen = True
        else:
            k = bisect_right(hits, f) - 1
            seen = not (k >= 0 and f < hits[k] + n)  # the first occurrence was not skipped
        present.add(v)
        if seen:
            total += length
            hits.append(c)
            nxt = c + n
        else:
            nxt = c + 1
    return total
