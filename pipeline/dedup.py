"""Exact and MinHash near-duplicate detection; connected components on Ray.

**Signatures** (:class:`MinHasher`, used by the :class:`DedupSignatures` step, all numpy):
the text is simplified (lower case, punctuation and symbols -> space, digit runs -> ``0``, all
vectorised in pyarrow), split on whitespace (eojeol for Korean), the distinct words of the batch
are hashed once with xxh3-64, word ``n``-gram shingles are combined from the word hashes in
uint64 arithmetic, and ``bands * rows`` universal hashes ``a*x + b (mod 2^64)`` give the
minimum per document. Band keys mix each band's ``rows`` values into one uint64 (the band index
is part of the key). Documents with no word get no band keys (they are only exact-deduplicated).

Why not datatrove's MinHash hash path: datatrove pins ``xxhash<4`` and its default
``HashConfig(hash_fc="xxhash")`` breaks with the xxhash 4.x that this project installs; it also
hashes every shingle with one Python call. We call xxhash 4's ``xxh3_64_intdigest`` directly,
once per *distinct word*, and do the rest in numpy (datatrove is still used for comparison in
``bench/bench_pipeline.py`` and the tests, with its ``sha1`` hash function).

**Exact duplicates**: ``text_hash`` = xxh3-64 of the text lower-cased with whitespace runs
collapsed.

**Clustering without a single-node bottleneck**: documents are graph nodes ``(shard << 32) |
row``. Each signature task writes its ``(band key, node)`` and ``(text hash, node)`` pairs into
``P`` hash partitions. One Ray task per partition turns equal keys into star edges (smallest
node -- the other nodes) and marks exact duplicates; the connected components of the edge set
are then computed by the alternating Large-Star / Small-Star algorithm (Kiveris et al., SoCC
2014, "Connected Components in MapReduce and Beyond"): each round is ``P`` Ray tasks over
edges partitioned by node hash, shuffling their outputs to each other through the object
store; it stops when the graph is a forest of stars rooted at each component's smallest node
(every task checks its own partition). No step gathers the graph on one node. The smallest node
of a component is its representative: it is kept, the others are dropped (``exact_duplicate``
when an earlier document has the same ``text_hash``, else ``near_duplicate``), and every member
carries ``dup_cluster_id`` (the representative's node number) and ``dup_cluster_size``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from pipeline.steps import Modifier, add_or_replace

__all__ = [
    "DedupSignatures",
    "MinHasher",
    "bucket_edges",
    "components_local",
    "components_ray",
    "large_star",
    "node_partition",
    "simplify",
    "small_star",
    "split_by_partition",
    "star_violations",
    "text_hash",
]

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)
_MUL = np.uint64(0x100000001B3)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (vectorised, uint64 wrap-around)."""
    with np.errstate(over="ignore"):
        x = x + _M1
        x = (x ^ (x >> np.uint64(30))) * _M2
        x = (x ^ (x >> np.uint64(27))) * _M3
        return x ^ (x >> np.uint64(31))


def simplify(text: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Lower case, punctuation/symbols -> space, digit runs -> ``0`` (vectorised)."""
    t = pc.utf8_lower(text)
    t = pc.replace_substring_regex(t, r"[\p{P}\p{S}]+", " ")
    return pc.replace_substring_regex(t, r"\d+", "0")


def text_hash(text: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """xxh3-64 of each text lower-cased with whitespace runs collapsed (uint64 array)."""
    t = pc.utf8_trim_whitespace(pc.replace_substring_regex(pc.utf8_lower(text), r"\s+", " "))
    h = xxhash.xxh3_64_intdigest
    return np.fromiter((h(s.encode("utf-8")) for s in t.to_pylist()), np.uint64, len(t))


class MinHasher:
    """MinHash signatures over word ``n_grams`` and LSH band keys (see module docstring).

    ``bands * rows`` hash functions; with the defaults (14 x 8, datatrove's) a pair with
    Jaccard similarity s shares at least one band with probability ``1 - (1 - s^8)^14``
    (0.92 at 0.8, 0.50 at 0.72, 0.05 at 0.5).
    """

    def __init__(self, n_grams: int = 5, bands: int = 14, rows: int = 8, seed: int = 1) -> None:
        self.n_grams, self.bands, self.rows, self.seed = n_grams, bands, rows, seed
        rng = np.random.default_rng(seed)
        k = bands * rows
        self.a = rng.integers(1, 2**63, size=k, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self.b = rng.integers(0, 2**63, size=k, dtype=np.uint64)
        self._band_salt = _mix(np.arange(bands, dtype=np.uint64) + np.uint64(seed << 20))

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows

    def signatures(self, text: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
        """``(signatures (n, bands*rows) uint64, has_words (n,) bool)``."""
        if isinstance(text, pa.ChunkedArray):
            text = text.combine_chunks()
        n = len(text)
        k = self.num_perm
        sig = np.full((n, k), np.iinfo(np.uint64).max, dtype=np.uint64)
        trimmed = pc.utf8_trim_whitespace(simplify(text))
        words = pc.utf8_split_whitespace(trimmed)
        raw_len = pc.list_value_length(words).to_numpy(zero_copy_only=False).astype(np.int64)
        empty = pc.equal(trimmed, "").to_numpy(zero_copy_only=False)
        flat = words.flatten()
        if empty.any():  # an empty text splits into one empty word: drop it
            flat = flat.filter(pa.array(np.repeat(~empty, raw_len)))
        lengths = np.where(empty, 0, raw_len)
        offsets = np.concatenate(([0], np.cumsum(lengths)))
        has = lengths > 0
        if len(flat) == 0:
            return sig, has
        enc = flat.dictionary_encode()
        h = xxhash.xxh3_64_intdigest
        uniq = np.fromiter(
            (h(w.encode("utf-8")) for w in enc.dictionary.to_pylist()),
            np.uint64,
            len(enc.dictionary),
        )
        wh = uniq[np.asarray(enc.indices, dtype=np.int64)]
        # shingle start positions: every g with g + n <= end, plus the start of short docs
        doc_of = np.repeat(np.arange(n, dtype=np.int64), lengths)
        pos = np.arange(len(wh), dtype=np.int64)
        end = offsets[1:][doc_of]
        start = offsets[:-1][doc_of]
        ng = self.n_grams
        valid = (pos + ng <= end) | ((pos == start) & (end - start < ng))
        starts = pos[valid]
        sdoc = doc_of[valid]
        send = end[valid]
        with np.errstate(over="ignore"):
            s = np.zeros(len(starts), dtype=np.uint64)
            for j in range(ng):
                idx = starts + j
                inside = idx < send
                v = wh[np.minimum(idx, len(wh) - 1)]
                s = np.where(inside, s * _MUL + v, s)
            s = _mix(s)
            chunk = max(1, (1 << 22) // k)  # ~32 MB of uint64 per chunk
            for lo in range(0, len(s), chunk):
                hi = min(lo + chunk, len(s))
                hv = np.multiply.outer(s[lo:hi], self.a) + self.b
                d = sdoc[lo:hi]
                cut = np.flatnonzero(np.diff(d)) + 1
                seg = np.concatenate(([0], cut))
                mins = np.minimum.reduceat(hv, seg, axis=0)
                docs = d[seg]
                sig[docs] = np.minimum(sig[docs], mins)
        return sig, has

    def band_keys(self, sig: np.ndarray) -> np.ndarray:
        """``(n, bands)`` uint64 keys, one per band (band index mixed in)."""
        n = sig.shape[0]
        r = sig.reshape(n, self.bands, self.rows)
        with np.errstate(over="ignore"):
            acc = np.zeros((n, self.bands), dtype=np.uint64)
            for j in range(self.rows):
                acc = acc * _MUL + r[:, :, j]
            return _mix(acc ^ self._band_salt)


class DedupSignatures(Modifier):
    """Adds ``text_hash`` (uint64) and ``band_keys`` (fixed-size list of uint64, null for
    documents without words) for the dedup phase."""

    name = "dedup_signatures"

    def __init__(self, n_grams: int = 5, bands: int = 14, rows: int = 8, seed: int = 1) -> None:
        super().__init__()
        self.hasher = MinHasher(n_grams, bands, rows, seed)

    def modify(self, table: pa.Table) -> pa.Table:
        th = text_hash(table["text"])
        sig, has = self.hasher.signatures(table["text"])
        keys = self.hasher.band_keys(sig)
        flat = pa.array(keys.reshape(-1), pa.uint64())
        lists = pa.FixedSizeListArray.from_arrays(flat, self.hasher.bands)
        lists = pc.if_else(pa.array(has), lists, pa.nulls(len(has), lists.type))
        table = add_or_replace(table, "text_hash", pa.array(th, pa.uint64()))
        return add_or_replace(table, "band_keys", lists)


# --------------------------------------------------------------------------------------
# Graph helpers (numpy; one partition at a time)


def node_partition(nodes: np.ndarray, parts: int) -> np.ndarray:
    """Hash partition of node numbers (int64) -> [0, parts)."""
    return (_mix(nodes.astype(np.uint64)) % np.uint64(parts)).astype(np.int64)


def split_by_partition(pairs: np.ndarray, parts: int) -> list[np.ndarray]:
    """Split ``(m, 2)`` int64 pairs by the partition of their first column."""
    if len(pairs) == 0:
        return [np.empty((0, 2), np.int64) for _ in range(parts)]
    p = node_partition(pairs[:, 0], parts)
    order = np.argsort(p, kind="stable")
    pairs, p = pairs[order], p[order]
    bounds = np.searchsorted(p, np.arange(parts + 1))
    return [pairs[bounds[i] : bounds[i + 1]] for i in range(parts)]


def _both_directions(edges: np.ndarray) -> np.ndarray:
    edges = edges[edges[:, 0] != edges[:, 1]]
    return np.concatenate([edges, edges[:, ::-1]])


def bucket_edges(keys: np.ndarray, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Documents sharing a key -> star edges (smallest node, other node).

    Returns ``(edges (m, 2) int64, non-smallest members (int64))``.
    """
    if len(keys) == 0:
        return np.empty((0, 2), np.int64), np.empty(0, np.int64)
    order = np.lexsort((nodes, keys))
    k, v = keys[order], nodes[order]
    first = np.ones(len(k), dtype=bool)
    first[1:] = k[1:] != k[:-1]
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(k)), 0))
    root = v[group_start]
    member = ~first & (v != root)
    edges = np.stack([root[member], v[member]], axis=1)
    return np.unique(edges, axis=0) if len(edges) else edges, np.unique(v[member])


def _groups(pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted unique directed pairs -> (pairs, group start index per pair, per-pair group min)."""
    u = pairs[:, 0]
    first = np.ones(len(u), dtype=bool)
    first[1:] = u[1:] != u[:-1]
    starts = np.flatnonzero(first)
    gmin = np.minimum.reduceat(pairs[:, 1], starts)
    counts = np.diff(np.append(starts, len(u)))
    return starts, np.repeat(gmin, counts), np.repeat(counts, counts)


def star_violations(pairs: np.ndarray) -> int:
    """Number of nodes (first column) that are neither a star centre (all neighbours larger)
    nor a leaf (one neighbour, smaller). Zero for every partition <=> a forest of stars."""
    if len(pairs) == 0:
        return 0
    pairs = np.unique(pairs, axis=0)
    starts, gmin, deg = _groups(pairs)
    u = pairs[starts, 0]
    gm = gmin[starts]
    d = deg[starts]
    centre = gm > u
    leaf = (d == 1) & (gm < u)
    return int(np.count_nonzero(~(centre | leaf)))


def large_star(pairs: np.ndarray) -> np.ndarray:
    """Large-Star on directed pairs grouped by first node: connect every larger neighbour of
    ``u`` to ``m(u)`` = min(u, neighbours). Returns undirected edges (one direction)."""
    if len(pairs) == 0:
        return np.empty((0, 2), np.int64)
    pairs = np.unique(pairs, axis=0)
    _, gmin, _ = _groups(pairs)
    u, v = pairs[:, 0], pairs[:, 1]
    m = np.minimum(gmin, u)
    sel = v > u
    return np.stack([v[sel], m[sel]], axis=1)


def small_star(pairs: np.ndarray) -> np.ndarray:
    """Small-Star: connect ``u`` and its smaller neighbours to their minimum."""
    if len(pairs) == 0:
        return np.empty((0, 2), np.int64)
    pairs = np.unique(pairs, axis=0)
    small = pairs[pairs[:, 1] < pairs[:, 0]]
    if len(small) == 0:
        return np.empty((0, 2), np.int64)
    starts, gmin, _ = _groups(small)
    u, v = small[:, 0], small[:, 1]
    out_v = np.stack([v, gmin], axis=1)
    out_u = np.stack([u[starts], gmin[starts]], axis=1)
    return np.concatenate([out_v, out_u])


def _shuffle(edges: np.ndarray, parts: int) -> list[np.ndarray]:
    return split_by_partition(
        np.unique(_both_directions(edges), axis=0) if len(edges) else edges, parts
    )


def _concat(arrays: Sequence[np.ndarray]) -> np.ndarray:
    arrays = [a for a in arrays if len(a)]
    return np.concatenate(arrays) if arrays else np.empty((0, 2), np.int64)


def _star_task(kind: str, parts: int, *inputs: np.ndarray):
    pairs = _concat(inputs)
    bad = star_violations(pairs) if kind == "large" else 0
    out = large_star(pairs) if kind == "large" else small_star(pairs)
    return (*_shuffle(out, parts), bad)


def _assign_task(*inputs: np.ndarray) -> np.ndarray:
    """Star forest partition -> ``(k, 3)`` int64 rows ``node, root, size`` (sorted by node)
    for every centre of this partition and its leaves."""
    pairs = _concat(inputs)
    if len(pairs) == 0:
        return np.empty((0, 3), np.int64)
    pairs = np.unique(pairs, axis=0)
    centre_pairs = pairs[pairs[:, 0] < pairs[:, 1]]
    if len(centre_pairs) == 0:
        return np.empty((0, 3), np.int64)
    roots, inverse, counts = np.unique(centre_pairs[:, 0], return_inverse=True, return_counts=True)
    sizes = (counts + 1)[inverse.reshape(-1)].astype(np.int64)
    rows = np.concatenate(
        [
            np.stack([centre_pairs[:, 1], centre_pairs[:, 0], sizes], axis=1),
            np.stack([roots, roots, counts + 1], axis=1),
        ]
    )
    return rows[np.argsort(rows[:, 0], kind="stable")]


def components_ray(edge_parts: list[list], parts: int, max_rounds: int = 64) -> list:
    """Connected components of an edge set held as Ray objects.

    ``edge_parts[q][p]``: an ObjectRef (or array) of directed pairs produced by task ``q`` for
    partition ``p`` (both directions present). Returns ``parts`` ObjectRefs of
    :func:`_assign_task` tables. Raises ``RuntimeError`` if it does not converge.
    """
    import ray

    star = ray.remote(_star_task).options(num_returns=parts + 1)
    assign = ray.remote(_assign_task)
    current = edge_parts
    for _ in range(max_rounds):
        outs = [star.remote("large", parts, *[q[p] for q in current]) for p in range(parts)]
        bad = sum(ray.get([o[parts] for o in outs]))
        if bad == 0:
            return [assign.remote(*[q[p] for q in current]) for p in range(parts)]
        large = [o[:parts] for o in outs]
        outs = [star.remote("small", parts, *[q[p] for q in large]) for p in range(parts)]
        current = [o[:parts] for o in outs]
    raise RuntimeError(f"connected components did not converge in {max_rounds} rounds")


def components_local(edges: np.ndarray, parts: int = 4, max_rounds: int = 64) -> np.ndarray:
    """The same algorithm without Ray (tests, small runs): ``(k, 3)`` node, root, size."""
    current = [_shuffle(edges, parts)]
    for _ in range(max_rounds):
        outs = [_star_task("large", parts, *[q[p] for q in current]) for p in range(parts)]
        if sum(o[parts] for o in outs) == 0:
            rows = [_assign_task(*[q[p] for q in current]) for p in range(parts)]
            allr = np.concatenate(rows) if rows else np.empty((0, 3), np.int64)
            return allr[np.argsort(allr[:, 0], kind="stable")]
        large = [o[:parts] for o in outs]
        outs = [_star_task("small", parts, *[q[p] for q in large]) for p in range(parts)]
        current = [o[:parts] for o in outs]
    raise RuntimeError(f"connected components did not converge in {max_rounds} rounds")
