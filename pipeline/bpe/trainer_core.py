"""The compiled core of :mod:`pipeline.bpe.trainer` (numba): word counts as arrays in, merges
as rows out. A module of its own so that a process which only prepares the arrays and hands
them to the training child (``isolate``) never imports numba (56 MB, 156 MB once a compiled
function is loaded); the child runs the same loop compiled ahead of time
(:mod:`pipeline.bpe.trainer_aot`) where it can."""

from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.typed import Dict

from .trainer import _KEY, _trainer_args

# pairs table columns (the counts are a separate int64 array)
_A, _B, _HEAD, _LASTW, _STAMP = range(5)


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


def _train_arrays(*arrays_and_scalars):
    """Allocate the trainer's work arrays (:func:`~pipeline.bpe.trainer._trainer_args`) and
    run the JIT loop; returns (merge rows, stats)."""
    args, _ = _trainer_args(*arrays_and_scalars)
    return _train(*args)
