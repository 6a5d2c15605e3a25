"""Dedup quality evaluation: generated near-duplicates at known Jaccard similarities, ground
truth, precision/recall, and datatrove's MinHash on the same documents (used by the tests and
``bench/bench_pipeline.py``).

Ground truth is the exact Jaccard similarity of the word 5-shingle sets (after
:func:`pipeline.dedup.simplify`). A document *should be removed* when an earlier document has
similarity >= ``truth_threshold`` (0.8) with it; a removal is *correct* when the removed
document has similarity >= ``fp_threshold`` (0.5) with some other document (below that it is a
false positive). Recall = correct-and-required removals / required removals.
"""

from __future__ import annotations

import random
from typing import Any

import pyarrow as pa

__all__ = [
    "datatrove_minhash_removed",
    "make_near_duplicates",
    "score_removals",
    "shingle_sets",
]


def shingle_sets(texts: list[str], n: int = 5) -> list[frozenset[str]]:
    from pipeline.dedup import simplify

    words = [t.split() for t in simplify(pa.array(texts, pa.string())).to_pylist()]
    out = []
    for w in words:
        if len(w) < n:
            out.append(frozenset([" ".join(w)]) if w else frozenset())
        else:
            out.append(frozenset(" ".join(w[i : i + n]) for i in range(len(w) - n + 1)))
    return out


def jaccard(a: frozenset, b: frozenset) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def make_near_duplicates(
    base_texts: list[str],
    edit_rates: tuple[float, ...] = (0.0, 0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3),
    per_rate: int = 6,
    seed: int = 0,
) -> tuple[list[str], list[dict[str, Any]]]:
    """Originals followed by variants: for each edit rate, ``per_rate`` variants of random
    originals with that share of words replaced by random words from the corpus (rate 0 = an
    exact copy). Returns ``(texts, info)`` with ``info[i] = {"kind", "base", "rate",
    "jaccard"}`` (Jaccard to its original, exact)."""
    rng = random.Random(seed)
    vocab = [w for t in base_texts for w in t.split()]
    texts = list(base_texts)
    info: list[dict[str, Any]] = [
        {"kind": "original", "base": i, "rate": None} for i in range(len(base_texts))
    ]
    for rate in edit_rates:
        for _ in range(per_rate):
            b = rng.randrange(len(base_texts))
            lines = base_texts[b].split("\n")
            out_lines = []
            for line in lines:
                words = line.split(" ")
                words = [rng.choice(vocab) if rng.random() < rate else w for w in words]
                out_lines.append(" ".join(words))
            texts.append("\n".join(out_lines))
            info.append({"kind": "copy" if rate == 0 else "variant", "base": b, "rate": rate})
    sets = shingle_sets(texts)
    for i, d in enumerate(info):
        d["jaccard"] = 1.0 if d["kind"] == "original" else jaccard(sets[i], sets[d["base"]])
    return texts, info


def score_removals(
    texts: list[str],
    removed: set[int],
    truth_threshold: float = 0.8,
    fp_threshold: float = 0.5,
) -> dict[str, float]:
    """Precision/recall of ``removed`` (indices into ``texts``, order = keep priority)."""
    sets = shingle_sets(texts)
    n = len(texts)
    best_earlier = [0.0] * n
    best_any = [0.0] * n
    # inverted index over shingles: only pairs sharing a shingle can have similarity > 0
    index: dict[str, list[int]] = {}
    for i, s in enumerate(sets):
        for sh in s:
            index.setdefault(sh, []).append(i)
    for i, s in enumerate(sets):
        cands = {j for sh in s for j in index[sh] if j != i}
        for j in cands:
            sim = jaccard(s, sets[j])
            best_any[i] = max(best_any[i], sim)
            if j < i:
                best_earlier[i] = max(best_earlier[i], sim)
    required = {i for i in range(n) if best_earlier[i] >= truth_threshold}
    correct = {i for i in removed if best_any[i] >= fp_threshold}
    return {
        "documents": n,
        "required": len(required),
        "removed": len(removed),
        "precision": len(correct) / len(removed) if removed else 1.0,
        "recall": len(required & removed) / len(required) if required else 1.0,
    }


def datatrove_minhash_removed(
    texts: list[str], workdir: str, n_grams: int = 5, bands: int = 14, rows: int = 8
) -> set[int]:
    """Indices removed by datatrove's 4-stage MinHash (signatures, buckets, single-process
    clustering, filter) on ``texts``, with the same shingle size and bands, whitespace word
    splitting and its ``sha1`` hash (its default xxhash path fails with xxhash 4)."""
    from datatrove.data import Document
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.utils.hashing import HashConfig

    from pipeline.filters import SpaceWordTokenizer

    cfg = MinhashConfig(
        n_grams=n_grams,
        num_buckets=bands,
        hashes_per_bucket=rows,
        hash_config=HashConfig(precision=64, hash_fc="sha1"),
    )
    docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
    sig = MinhashDedupSignature(f"{workdir}/sigs", config=cfg, language=SpaceWordTokenizer())
    sig.run(iter(docs), 0, 1)
    buckets = MinhashDedupBuckets(f"{workdir}/sigs", f"{workdir}/buckets", config=cfg)
    for b in range(bands):  # one "task" per bucket, as datatrove's executors run it
        buckets.run(None, b, bands)
    MinhashDedupCluster(f"{workdir}/buckets", f"{workdir}/remove", config=cfg).run(None, 0, 1)
    kept = MinhashDedupFilter(f"{workdir}/remove").run(iter(docs), 0, 1)
    kept_ids = {int(d.id) for d in kept}
    return set(range(len(texts))) - kept_ids
