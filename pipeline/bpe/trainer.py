"""Byte-level BPE training from pretoken counts, merge for merge what ``tokenizers`` trains.

:func:`train_from_counts` is the pure core (word counts in, merge list out): the same algorithm
as the Rust ``BpeTrainer`` of Hugging Face ``tokenizers`` — the most frequent adjacent pair is
merged at every step, ties going to the pair of smaller token ids (the alphabet numbered by
code point, merged tokens in order of creation), pair counts updated from the neighbours of
every merged occurrence, a lazy max-heap — compiled with numba, so that a table of counts
reduced from a cluster can be trained on one node without the text. A merge whose token string
already exists reuses that token (the vocabulary does not grow), as ``tokenizers`` does.

The slow, obvious version is :func:`forensics.training.continue_bpe` (pure Python) and the
reference is ``tokenizers`` itself: the tests compare all three on real corpora.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numba
import numpy as np
from numba import types
from numba.typed import Dict

logger = logging.getLogger(__name__)

__all__ = [
    "BPETrainingError",
    "TrainedBPE",
    "byte_alphabet",
    "continue_training",
    "to_tokenizer",
    "train_from_code_points",
    "train_from_counts",
]

_KEY = np.int64(1 << 24)  # pair key a * _KEY + b: token ids below 16.7 M
_P = np.uint64(1_000_003)  # polynomial string hash (duplicate tokens; verified afterwards)

# pairs table columns (the counts are a separate int64 array)
_A, _B, _HEAD, _LASTW, _STAMP = range(5)


class BPETrainingError(ValueError):
    """The counts cannot train the requested vocabulary (names the problem)."""


@dataclass(frozen=True)
class TrainedBPE:
    """``alphabet``: the base symbols (token ids 0..len-1, sorted by code point);
    ``merges``: (left, right) token strings in rank order; ``vocab``: token string → id."""

    alphabet: tuple[str, ...]
    merges: tuple[tuple[str, str], ...]
    vocab: dict[str, int]
    duplicates: int  # merges whose token already existed (tokenizers records them too)
    peak_rss: int | None = None  # bytes: the training child's peak resident size (isolate)


def byte_alphabet() -> list[str]:
    """The 256 byte-level symbols (GPT-2's bytes → unicode map)."""
    from forensics.merges import bytes_to_unicode

    return sorted(bytes_to_unicode().values())


# ------------------------------------------------------------------------------------------
# the compiled core
# ------------------------------------------------------------------------------------------
@numba.njit(cache=True)
def _grow2(a, n):
    if n <= a.shape[0]:
        return a
    b = np.empty((max(n, a.shape[0] + a.shape[0] // 2), a.shape[1]), a.dtype)
    b[: a.shape[0]] = a
    return b


@numba.njit(cache=True)
def _grow1(a, n):
    if n <= a.shape[0]:
        return a
    b = np.empty(max(n, a.shape[0] + a.shape[0] // 2), a.dtype)
    b[: a.shape[0]] = a
    return b


@numba.njit(cache=True)
def _slot(keys, pairs, x, y):
    """Open addressing (linear probing): ``keys`` holds pair ids (-1: empty), the pairs
    themselves are ``pairs[pid, _A/_B]`` — 4 bytes a slot, not a stored 64-bit key."""
    mask = keys.shape[0] - 1
    i = (np.uint64(x * _KEY + y) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)
    i = np.int64(i) & mask
    while keys[i] != -1:
        q = keys[i]
        if pairs[q, _A] == x and pairs[q, _B] == y:
            break
        i = (i + 1) & mask
    return i


@numba.njit(cache=True)
def _rehash(keys, pairs):
    new = np.full(keys.shape[0] * 2, -1, keys.dtype)
    for i in range(keys.shape[0]):
        q = keys[i]
        if q != -1:
            new[_slot(new, pairs, pairs[q, _A], pairs[q, _B])] = q
    return new


@numba.njit(cache=True)
def _pair(keys, pairs, count, npairs, x, y):
    """The id of pair (x, y), created with count 0 when new; returns
    (pid, keys, pairs, count, npairs)."""
    i = _slot(keys, pairs, x, y)
    if keys[i] != -1:
        return np.int64(keys[i]), keys, pairs, count, npairs
    if 2 * (npairs + 1) > keys.shape[0]:
        keys = _rehash(keys, pairs)
        i = _slot(keys, pairs, x, y)
    keys[i] = npairs
    pairs = _grow2(pairs, npairs + 1)
    count = _grow1(count, npairs + 1)
    pid = npairs
    pairs[pid, _A] = x
    pairs[pid, _B] = y
    count[pid] = 0
    pairs[pid, _HEAD] = -1
    pairs[pid, _LASTW] = -1
    pairs[pid, _STAMP] = -1
    return np.int64(pid), keys, pairs, count, npairs + 1


@numba.njit(cache=True)
def _post(pairs, post, npost, pid, w):
    """Record that word ``w`` holds pair ``pid`` (once per word in a row)."""
    if pairs[pid, _LASTW] == w:
        return post, npost
    post = _grow2(post, npost + 1)
    post[npost, 0] = w
    post[npost, 1] = pairs[pid, _HEAD]
    pairs[pid, _HEAD] = npost
    pairs[pid, _LASTW] = w
    return post, npost + 1


@numba.njit(cache=True)
def _before(heap, pairs, i, j):
    """Whether heap entry i pops before j: higher count, then smaller (a, b)."""
    if heap[i, 0] != heap[j, 0]:
        return heap[i, 0] > heap[j, 0]
    pi, pj = heap[i, 1], heap[j, 1]
    if pairs[pi, _A] != pairs[pj, _A]:
        return pairs[pi, _A] < pairs[pj, _A]
    return pairs[pi, _B] < pairs[pj, _B]


@numba.njit(cache=True)
def _swap(heap, i, j):
    for c in range(2):
        t = heap[i, c]
        heap[i, c] = heap[j, c]
        heap[j, c] = t


@numba.njit(cache=True)
def _push(heap, pairs, n, count, pid):
    """Heap rows are (count, pair id)."""
    heap = _grow2(heap, n + 1)
    heap[n, 0] = count
    heap[n, 1] = pid
    i = n
    while i > 0:
        parent = (i - 1) // 2
        if _before(heap, pairs, i, parent):
            _swap(heap, i, parent)
            i = parent
        else:
            break
    return heap, n + 1


@numba.njit(cache=True)
def _pop(heap, pairs, n):
    """Move the top entry to row n - 1 (read it there) and restore the heap of n - 1 rows."""
    n -= 1
    _swap(heap, 0, n)
    i = 0
    while True:
        left = 2 * i + 1
        if left >= n:
            break
        best = left
        if left + 1 < n and _before(heap, pairs, left + 1, left):
            best = left + 1
        if _before(heap, pairs, best, i):
            _swap(heap, i, best)
            i = best
        else:
            break
    return n


@numba.njit(cache=True)
def _train(
    sym,
    post0,
    pairs0,
    count0,
    heap0,
    start,
    length,
    wcount,
    tok_hash,
    tok_pow,
    n_vocab,
    vocab_size,
    min_freq,
    mark,
    restrict,
    skip_existing,
):
    """Merges as rows (a, b, new id) until the vocabulary holds ``vocab_size`` tokens.

    ``sym`` (the words' symbols, word w at ``start[w] : start[w] + length[w]``) and
    ``length`` are updated in place. ``tok_hash``/``tok_pow``: the existing tokens' string
    hashes. ``restrict``: only pairs with a side whose ``mark`` is set may merge (a new token
    is marked when a side is). ``skip_existing``: a pair whose token string already exists is
    not merged (extension); otherwise it is, reusing the token (what ``tokenizers`` does).
    """
    n_words = start.shape[0]
    pairs = pairs0  # allocated by the caller at their upper bound (see _run)
    pcount = count0
    keys = np.full(1 << 17, -1, pairs.dtype)
    npairs = 0
    post = post0  # (word, next) rows; int32 when the caller knows they fit
    npost = 0
    for w in range(n_words):
        s0 = start[w]
        for i in range(s0, s0 + length[w] - 1):
            pid, keys, pairs, pcount, npairs = _pair(
                keys, pairs, pcount, npairs, sym[i], sym[i + 1]
            )
            pcount[pid] += wcount[w]
            post, npost = _post(pairs, post, npost, pid, w)
    heap = heap0
    nheap = 0
    for pid in range(npairs):
        if pcount[pid] > 0:
            heap, nheap = _push(heap, pairs, nheap, pcount[pid], pid)

    n_tok = tok_hash.shape[0]
    hashes = Dict.empty(key_type=types.int64, value_type=types.int64)
    for t in range(n_tok):
        hashes[np.int64(tok_hash[t])] = t
    th = np.empty(max(n_tok * 2, 1024), np.uint64)
    tp = np.empty(max(n_tok * 2, 1024), np.uint64)
    th[:n_tok] = tok_hash
    tp[:n_tok] = tok_pow
    mk = np.zeros(max(n_tok * 2, 1024), np.int8)
    mk[:n_tok] = mark
    merges = np.empty((max(vocab_size - n_vocab, 16), 3), np.int64)
    nm = 0
    wstamp = np.full(n_words, -1, np.int64)
    changed = np.empty(1024, np.int64)
    step = 0
    while n_vocab < vocab_size and nheap > 0:
        nheap = _pop(heap, pairs, nheap)
        c = heap[nheap, 0]
        pid = heap[nheap, 1]
        a = pairs[pid, _A]
        b = pairs[pid, _B]
        if c != pcount[pid]:
            heap, nheap = _push(heap, pairs, nheap, pcount[pid], pid)
            continue
        if c < 1 or c < min_freq:
            break
        if restrict and mk[a] == 0 and mk[b] == 0:
            pcount[pid] = 0  # never merged (its count stays unreliable: unused)
            continue
        h = th[a] * tp[b] + th[b]
        hk = np.int64(h)
        r = hashes[hk] if hk in hashes else np.int64(-1)
        if r >= 0 and skip_existing:
            pcount[pid] = 0
            continue
        if r < 0:
            r = n_tok
            th = _grow1(th, n_tok + 1)
            tp = _grow1(tp, n_tok + 1)
            mk = _grow1(mk, n_tok + 1)
            th[r] = h
            tp[r] = tp[a] * tp[b]
            mk[r] = 1 if (mk[a] or mk[b]) else 0
            hashes[hk] = r
            n_tok += 1
            n_vocab += 1
        merges = _grow2(merges, nm + 1)
        merges[nm, 0] = a
        merges[nm, 1] = b
        merges[nm, 2] = r
        nm += 1
        step += 1
        nchanged = 0
        p = pairs[pid, _HEAD]
        while p != -1:
            w = post[p, 0]
            p = post[p, 1]
            if wstamp[w] == step:
                continue
            wstamp[w] = step
            s0 = start[w]
            end = s0 + length[w]
            cnt = wcount[w]
            i = s0
            j = s0
            while i < end:
                if i + 1 < end and sym[i] == a and sym[i + 1] == b:
                    # (prev, a) -> (prev, r) and (b, next) -> (r, next), as tokenizers' Word::merge
                    for side in range(2):
                        if side == 0:
                            if j == s0:
                                continue
                            x_old = sym[j - 1]
                            y_old = a
                            x_new = sym[j - 1]
                            y_new = r
                        else:
                            if i + 2 >= end:
                                continue
                            x_old = b
                            y_old = sym[i + 2]
                            x_new = r
                            y_new = sym[i + 2]
                        q, keys, pairs, pcount, npairs = _pair(
                            keys, pairs, pcount, npairs, x_old, y_old
                        )
                        pcount[q] -= cnt
                        q, keys, pairs, pcount, npairs = _pair(
                            keys, pairs, pcount, npairs, x_new, y_new
                        )
                        pcount[q] += cnt
                        post, npost = _post(pairs, post, npost, q, w)
                        if pairs[q, _STAMP] != step:
                            pairs[q, _STAMP] = step
                            changed = _grow1(changed, nchanged + 1)
                            changed[nchanged] = q
                            nchanged += 1
                    sym[j] = r
                    j += 1
                    i += 2
                else:
                    sym[j] = sym[i]
                    j += 1
                    i += 1
            length[w] = j - s0
        for k in range(nchanged):
            q = changed[k]
            if pcount[q] > 0:
                heap, nheap = _push(heap, pairs, nheap, pcount[q], q)
    stats = np.array([npairs, npost, heap.shape[0], keys.shape[0], pairs.shape[0], post.shape[0]])
    return merges[:nm].copy(), stats


# ------------------------------------------------------------------------------------------
# the Python API
# ------------------------------------------------------------------------------------------
def _string_hashes(tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Polynomial hash of each token string and P^len (mod 2^64), as ``_train`` extends them."""
    mask, p = (1 << 64) - 1, int(_P)
    hs, ps = [], []
    for t in tokens:
        h, pw = 0, 1
        for ch in t:
            h = (h * p + ord(ch) + 1) & mask
            pw = (pw * p) & mask
        hs.append(h)
        ps.append(pw)
    return np.array(hs, dtype=np.uint64), np.array(ps, dtype=np.uint64)


def train_from_counts(
    word_counts: Mapping[str, int] | tuple[Sequence[str], Sequence[int]],
    vocab_size: int,
    *,
    alphabet: Sequence[str] | None = None,
    min_frequency: int = 0,
    isolate: bool = False,
) -> TrainedBPE:
    """Train a BPE from pretoken counts, as ``tokenizers.trainers.BpeTrainer`` would.

    ``word_counts``: pretoken → count (or a ``(words, counts)`` pair of sequences), pretokens
    in the model's symbol space (byte-level unicode for byte-level models). ``alphabet``: the
    initial alphabet (default: the 256 byte-level symbols); characters of the words outside it
    are added, as the trainer's ``compute_alphabet`` does. ``vocab_size`` counts the alphabet.
    No special tokens. ``isolate``: see :func:`train_from_code_points`.
    """
    if isinstance(word_counts, tuple):
        words, counts = list(word_counts[0]), np.asarray(word_counts[1], dtype=np.int64)
    else:
        words = list(word_counts)
        counts = np.array(list(word_counts.values()), dtype=np.int64)
    if len(words) != len(counts):
        raise BPETrainingError(f"{len(words)} words but {len(counts)} counts")
    lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
    cps = np.frombuffer("".join(words).encode("utf-32-le"), dtype=np.uint32)
    return train_from_code_points(
        cps,
        lengths,
        counts,
        vocab_size,
        alphabet=alphabet,
        min_frequency=min_frequency,
        isolate=isolate,
    )


def train_from_code_points(
    cps: np.ndarray,
    lengths: np.ndarray,
    counts: np.ndarray,
    vocab_size: int,
    *,
    alphabet: Sequence[str] | None = None,
    min_frequency: int = 0,
    isolate: bool = False,
) -> TrainedBPE:
    """:func:`train_from_counts` on the words as one array of code points: word ``i`` is the
    next ``lengths[i]`` of ``cps``, seen ``counts[i]`` times (no Python string per word).

    ``isolate``: the compiled trainer runs in a child process that imports only numpy, numba
    and this module and gets the arrays through files — a process that has Ray, polars and the
    count table loaded does not also hold the trainer's arrays (``mixtrace bpe train``).
    """
    cps = np.asarray(cps, dtype=np.uint32)
    lengths = np.asarray(lengths, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    if len(lengths) != len(counts):
        raise BPETrainingError(f"{len(lengths)} words but {len(counts)} counts")
    if int(lengths.sum()) != cps.size or (lengths.size and lengths.min() < 0):
        raise BPETrainingError(
            f"word lengths sum to {int(lengths.sum())}, not the {cps.size} code points given"
        )
    if counts.size and counts.min() < 0:
        raise BPETrainingError("word counts must be non-negative")
    if counts.size and (counts.min() == 0 or lengths.min() == 0):  # drop empty words, zeros
        keep = (counts > 0) & (lengths > 0)
        cps = cps[np.repeat(keep, lengths)]
        counts, lengths = counts[keep], lengths[keep]
    # the alphabet: the base symbols and every character of the words
    seen = np.flatnonzero(np.bincount(cps)) if cps.size else np.zeros(0, np.int64)
    base = byte_alphabet() if alphabet is None else alphabet
    symbols = sorted(set(base) | set(map(chr, seen.tolist())))  # numbered by code point
    if vocab_size < len(symbols):
        raise BPETrainingError(
            f"vocab size {vocab_size} is below the alphabet ({len(symbols)} symbols)"
        )
    if len(symbols) >= int(_KEY):
        raise BPETrainingError(f"alphabet of {len(symbols)} symbols is too large")
    start = np.zeros(len(lengths), dtype=np.int64)
    if len(lengths):
        np.cumsum(lengths[:-1], out=start[1:])
    sym_cps = np.array([ord(s) for s in symbols], dtype=np.int64)
    table = np.full(int(sym_cps.max()) + 1, -1, dtype=np.int32)
    table[sym_cps] = np.arange(len(symbols), dtype=np.int32)
    sym = table[cps]
    del cps
    stats: dict[str, int] = {}
    tokens, merges, dups = _run(
        sym,
        start,
        lengths,
        counts,
        list(symbols),
        vocab_size,
        min_frequency,
        isolate=isolate,
        stats=stats,
    )
    return TrainedBPE(
        alphabet=tuple(symbols),
        merges=tuple(merges),
        vocab={t: i for i, t in enumerate(tokens)},
        duplicates=dups,
        peak_rss=stats.get("peak_rss"),
    )


# the compiled trainer's inputs, in order (arrays, then scalars); see _train_arrays
_ARRAYS = ("sym", "start", "lengths", "counts", "tok_hash", "tok_pow", "mark")
_SCALARS = ("n_vocab", "vocab_size", "min_freq", "restrict", "skip_existing")


def _train_arrays(
    sym,
    start,
    lengths,
    counts,
    th,
    tp,
    mark,
    n_vocab,
    vocab_size,
    min_freq,
    restrict,
    skip_existing,
):
    """Allocate the trainer's work arrays and run it; returns (merge rows, stats)."""
    n_sym = len(sym)
    # postings (word, next): int32 when every index fits (initial ≤ n_sym, then ≤ 2 per merge)
    wide = 3 * n_sym + len(start) >= (1 << 31) - 1
    # capacities at their upper bounds (pairs, postings and heap entries: at most the initial
    # ones plus two per merged occurrence, < 3 per symbol), allocated here by numpy: pages
    # never written are never resident, and no array is ever copied to grow (numba's own
    # np.empty writes its pages)
    bound = 3 * n_sym + 16
    idx = np.int64 if wide else np.int32  # word, posting and pair indices
    return _train(
        sym.astype(np.int32, copy=False),
        np.empty((bound, 2), idx),  # postings
        np.empty((bound, 5), idx),  # pairs: a, b, first posting, last word, stamp
        np.empty(bound, np.int64),  # pair counts
        np.empty((2 * bound, 2), np.int64),  # heap
        start.astype(np.int64),
        lengths.astype(np.int64),
        counts.astype(np.int64),
        th,
        tp,
        np.int64(n_vocab),
        np.int64(vocab_size),
        np.int64(min_freq),
        mark.astype(np.int8),
        bool(restrict),
        bool(skip_existing),
    )


def _train_in_child(arrays: dict[str, np.ndarray], scalars: dict[str, int]):
    """:func:`_train_arrays` in a fresh ``python -m pipeline.bpe.trainer_child`` process."""
    import json
    import os
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="mixtrace-bpe-") as tmp:
        d = Path(tmp)
        for name in _ARRAYS:
            np.save(d / f"{name}.npy", arrays[name], allow_pickle=False)
        (d / "scalars.json").write_text(json.dumps(scalars), encoding="utf-8")
        arrays.clear()  # the caller's references go; the child reads the files
        # the child imports this very copy of the package (a Ray worker's working dir, a
        # checkout not installed)
        root = str(Path(__file__).resolve().parents[2])
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline.bpe.trainer_child", str(d)],
            capture_output=True,
            text=True,
            env=env,
        )
        if proc.returncode != 0:
            how = (
                f"killed by signal {-proc.returncode} (out of memory?)"
                if proc.returncode < 0
                else f"exit {proc.returncode}"
            )
            raise RuntimeError(
                f"the BPE training process failed ({how}): {proc.stderr.strip()[-2000:]}"
            )
        rows = np.load(d / "rows.npy", allow_pickle=False)
        stats = np.load(d / "stats.npy", allow_pickle=False)
    return rows, stats


def _run(
    sym: np.ndarray,
    start: np.ndarray,
    lengths: np.ndarray,
    counts: np.ndarray,
    tokens: list[str],
    vocab_size: int,
    min_frequency: int = 0,
    *,
    mark: np.ndarray | None = None,
    skip_existing: bool = False,
    isolate: bool = False,
    stats: dict[str, int] | None = None,
) -> tuple[list[str], list[tuple[str, str]], int]:
    """Run the compiled trainer (in a child process when ``isolate``); returns (all tokens,
    the new merges, duplicate merges).

    ``tokens``: the existing tokens' strings by id (``sym`` holds their ids). ``stats``, when
    given, receives the trainer's array sizes (and the child's ``peak_rss`` in bytes)."""
    th, tp = _string_hashes(tokens)
    restrict = mark is not None
    arrays = {
        "sym": sym.astype(np.int32, copy=False),
        "start": start.astype(np.int64, copy=False),
        "lengths": lengths.astype(np.int64),  # a copy: updated in place
        "counts": counts.astype(np.int64, copy=False),
        "tok_hash": th,
        "tok_pow": tp,
        "mark": (mark if restrict else np.zeros(len(tokens), np.int8)).astype(np.int8),
    }
    scalars = {
        "n_vocab": len(tokens),
        "vocab_size": int(vocab_size),
        "min_freq": int(min_frequency),
        "restrict": int(restrict),
        "skip_existing": int(skip_existing),
    }
    del sym
    if isolate:
        rows, figures = _train_in_child(arrays, scalars)
    else:
        rows, figures = _train_arrays(
            *(arrays[k] for k in _ARRAYS), *(scalars[k] for k in _SCALARS)
        )
    names = ("pairs", "postings", "heap_rows", "hash_slots", "pair_capacity", "post_capacity")
    got = dict(zip((*names, "peak_rss"), map(int, figures.tolist()), strict=False))
    logger.debug("trainer arrays: %s", got)
    if stats is not None:
        stats.update(got)
    tokens = list(tokens)
    merges: list[tuple[str, str]] = []
    duplicates = 0
    for a, b, r in rows.tolist():
        s = tokens[a] + tokens[b]
        if r == len(tokens):
            tokens.append(s)
        else:
            if tokens[r] != s:  # a 64-bit hash collision: never seen, but never silent
                raise BPETrainingError(f"hash collision between tokens {tokens[r]!r} and {s!r}")
            duplicates += 1
        merges.append((tokens[a], tokens[b]))
    return tokens, merges, duplicates


def continue_training(
    tokens: Sequence[str],
    encoded: Sequence[Sequence[int]],
    counts: Sequence[int] | np.ndarray,
    n_new: int,
    *,
    mark: Sequence[bool] | np.ndarray | None = None,
    min_frequency: int = 0,
) -> tuple[list[tuple[str, str]], list[str]]:
    """Continue BPE training from an existing vocabulary: up to ``n_new`` new tokens.

    ``tokens``: the existing tokens' strings by id; ``encoded``: each distinct word already
    tokenized by the existing model (its merges pre-applied), with ``counts``. A pair whose
    token already exists is not merged (the extension only adds new tokens). ``mark``: when
    given, only pairs with a marked side may merge (e.g. tokens holding Hangul bytes), so
    that text without marked tokens encodes exactly as before. Returns (new merges, new
    tokens), in order.
    """
    counts = np.asarray(counts, dtype=np.int64)
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    start = np.zeros(len(encoded), dtype=np.int64)
    if len(encoded):
        np.cumsum(lengths[:-1], out=start[1:])
    sym = np.fromiter((t for seq in encoded for t in seq), dtype=np.int64, count=int(lengths.sum()))
    m = None if mark is None else np.asarray(mark, dtype=np.int8)
    all_tokens, merges, _ = _run(
        sym,
        start,
        lengths,
        counts,
        list(tokens),
        len(tokens) + n_new,
        min_frequency,
        mark=m,
        skip_existing=True,
    )
    return merges, all_tokens[len(tokens) :]


def to_tokenizer(trained: TrainedBPE, pretokenizer: str):
    """An HF ``tokenizers.Tokenizer`` (byte-level pre-tokenizer and decoder) of a trained BPE,
    serialized by ``to_str()`` as the same ``tokenizer.json`` the HF trainer writes."""
    from tokenizers import models

    from forensics.training import byte_level_tokenizer

    model = models.BPE(vocab=dict(trained.vocab), merges=list(trained.merges))
    return byte_level_tokenizer(pretokenizer, model)
