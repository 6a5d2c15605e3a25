"""Throughput of the corpus pipeline stages, and of datatrove on the same filters and data.

    python bench/bench_pipeline.py [--corpus ../shared/corpus/ko.jsonl.gz] [--repeat 2] [--no-e2e]

Prints MB/s per core (one process, single-threaded, input bytes of each stage / its time) for
each clean stage, the clean stages together, MinHash signatures, then the same datatrove
filters run through datatrove's own ``BaseFilter.run`` on the same documents, datatrove's
MinHash signature stage, and finally the whole pipeline end to end on a local Ray (bytes read /
wall time / CPUs). Also prints dedup precision/recall of both implementations on generated
near-duplicates.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402

from pipeline.config import build_steps, load_config  # noqa: E402


def load_texts(path: str, repeat: int) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        texts = [json.loads(line)["text"] for line in fh]
    return texts * repeat


def base_table(texts: list[str]) -> pa.Table:
    n = len(texts)
    return pa.table(
        {
            "id": [str(i) for i in range(n)],
            "orig_id": [str(i) for i in range(n)],
            "text": texts,
            "source": ["bench"] * n,
            "n_bytes": pa.array([len(t.encode()) for t in texts], pa.int64()),
            "lang": pa.nulls(n, pa.string()),
            "lang_score": pa.nulls(n, pa.float32()),
        }
    )


def mbps(nbytes: int, seconds: float) -> str:
    return f"{nbytes / 1e6 / max(seconds, 1e-9):8.2f} MB/s/core"


def bench_steps(texts: list[str], batch: int = 512) -> None:
    from pipeline.steps import StepStats

    cfg = load_config()
    steps = build_steps(cfg)
    # warm-up (imports, the language model: once per worker process), then fresh counts
    t = base_table(texts[:50])
    for s in steps:
        t, _ = s(t)
    for s in steps:
        s.stats = StepStats(s.name)
    total_in = sum(len(t.encode()) for t in texts)
    for lo in range(0, len(texts), batch):
        t = base_table(texts[lo : lo + batch])
        for s in steps:
            t, _ = s(t)
    print(
        f"\n== mixtrace steps (warm), one core, {total_in / 1e6:.2f} MB Korean ({len(texts)} docs)"
    )
    clean_s = 0.0
    for s in steps:
        st = s.stats
        if s.name != "dedup_signatures":
            clean_s += st.seconds
        print(
            f"{s.name:20s} {mbps(st.bytes_in, st.seconds)}   in {st.bytes_in / 1e6:6.2f} MB, "
            f"{st.docs_in - st.docs_out} removed, {st.seconds:6.2f} s"
        )
    print(f"{'clean stages (sum)':20s} {mbps(total_in, clean_s)}   (input bytes / summed time)")


def bench_datatrove(texts: list[str]) -> None:
    from datatrove.data import Document
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
    from datatrove.pipeline.filters import (
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )
    from datatrove.utils.hashing import HashConfig

    from pipeline.dedup import MinHasher
    from pipeline.filters import SpaceWordTokenizer

    cfg = load_config()["stages"]
    tok = SpaceWordTokenizer()

    def ko(name):
        p = dict(cfg[name]["default"])
        p.update(cfg[name]["ko"] or {})
        return {
            k: (tuple(tuple(x) for x in v) if k.endswith("n_grams") else v) for k, v in p.items()
        }

    nbytes = sum(len(t.encode()) for t in texts)
    print(
        f"\n== datatrove on the same {nbytes / 1e6:.2f} MB (its BaseFilter.run, Korean thresholds, "
        "whitespace words), one core"
    )
    for name, cls in (
        ("fineweb_quality", FineWebQualityFilter),
        ("gopher_repetition", GopherRepetitionFilter),
        ("gopher_quality", GopherQualityFilter),
    ):
        f = cls(language=tok, **ko(name))
        docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
        t0 = time.perf_counter()
        kept = sum(1 for _ in f.run(iter(docs)))
        dt = time.perf_counter() - t0
        print(f"{name:20s} {mbps(nbytes, dt)}   {len(docs) - kept} removed (all docs as input)")
    with tempfile.TemporaryDirectory() as tmp:
        mc = MinhashConfig(hash_config=HashConfig(precision=64, hash_fc="sha1"))
        sig = MinhashDedupSignature(f"{tmp}/sigs", config=mc, language=tok)
        docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
        t0 = time.perf_counter()
        sig.run(iter(docs), 0, 1)
        dt = time.perf_counter() - t0
    print(
        f"{'minhash signatures':20s} {mbps(nbytes, dt)}   datatrove (sha1, 14x8, 5-grams, incl. its bucket sort)"
    )
    mh = MinHasher()
    t0 = time.perf_counter()
    for lo in range(0, len(texts), 512):
        s, _ = mh.signatures(pa.array(texts[lo : lo + 512]))
        mh.band_keys(s)
    dt = time.perf_counter() - t0
    print(
        f"{'minhash signatures':20s} {mbps(nbytes, dt)}   mixtrace (xxh3 words + numpy, 14x8, 5-grams)"
    )


def bench_dedup_quality(corpus_dir: Path) -> None:
    import random

    from pipeline.dedup import MinHasher, bucket_edges, components_local
    from pipeline.dedup_eval import datatrove_minhash_removed, make_near_duplicates, score_removals

    base = []
    for lang in ("ko", "en"):
        base += load_texts(str(corpus_dir / f"{lang}.jsonl.gz"), 1)
    rnd = random.Random(1)
    base = rnd.sample([t for t in base if len(t.split()) >= 80], 300)
    texts, info = make_near_duplicates(base, per_rate=20, seed=3)
    import numpy as np

    mh = MinHasher()
    sig, _ = mh.signatures(pa.array(texts))
    keys = mh.band_keys(sig)
    edges, _ = bucket_edges(keys.ravel(), np.repeat(np.arange(len(texts)), keys.shape[1]))
    rows = components_local(edges)
    ours = score_removals(texts, {int(a) for a, b, _ in rows if a != b})
    with tempfile.TemporaryDirectory() as tmp:
        theirs = score_removals(texts, datatrove_minhash_removed(texts, tmp))
    print(
        f"\n== dedup quality: {len(texts)} docs (300 real ko/en + variants at edit rates 0-30 %), "
        f"{ours['required']} docs with an earlier doc at Jaccard >= 0.8"
    )
    for name, r in (("mixtrace", ours), ("datatrove", theirs)):
        print(
            f"{name:10s} removed {r['removed']:4d}  precision {r['precision']:.3f}  recall {r['recall']:.3f}"
        )
    by_bucket: dict[str, list[int]] = {}
    removed = {int(a) for a, b, _ in rows if a != b}
    for i, d in enumerate(info):
        if d["kind"] == "original":
            continue
        j = d["jaccard"]
        key = "1.0" if j == 1 else f"{int(j * 10) / 10:.1f}-{int(j * 10) / 10 + 0.1:.1f}"
        by_bucket.setdefault(key, [0, 0])
        by_bucket[key][0] += 1
        by_bucket[key][1] += i in removed
    print("mixtrace detection rate of generated variants by Jaccard to their original:")
    print("  " + "  ".join(f"{k}: {v[1]}/{v[0]}" for k, v in sorted(by_bucket.items())))


def bench_e2e(corpus: str, repeat: int, cpus: int) -> None:
    from forensics.raytools import ensure_ray
    from pipeline.executor import run_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        # several shards so that every core has work
        texts = load_texts(corpus, repeat)
        per = max(1, len(texts) // (2 * cpus))
        for k in range(0, len(texts), per):
            with gzip.open(f"{tmp}/part{k:06d}.jsonl.gz", "wt", encoding="utf-8") as fh:
                for i, t in enumerate(texts[k : k + per]):
                    fh.write(json.dumps({"id": f"{k}-{i}", "text": t}, ensure_ascii=False) + "\n")
        ensure_ray(None, num_cpus=cpus)
        cfg = load_config(inputs=[tmp + "/*.jsonl.gz"], output=f"{tmp}/out")
        t0 = time.perf_counter()
        rep = run_pipeline(cfg)
        dt = time.perf_counter() - t0
        mb = rep["input_bytes"] / 1e6
        print(
            f"\n== end to end on a local Ray, {cpus} CPUs: {mb:.2f} MB in {dt:.1f} s "
            f"= {mb / dt / cpus:.2f} MB/s/core (phases: {rep['seconds']})"
        )
        print(f"kept {rep['kept_documents']} of {rep['input_documents']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default=str(ROOT.parent / "shared" / "corpus" / "ko.jsonl.gz"))
    ap.add_argument("--repeat", type=int, default=1, help="repeat the corpus this many times")
    ap.add_argument("--e2e-repeat", type=int, default=4)
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-e2e", action="store_true")
    args = ap.parse_args()
    texts = load_texts(args.corpus, args.repeat)
    bench_steps(texts)
    bench_datatrove(texts)
    bench_dedup_quality(Path(args.corpus).parent)
    if not args.no_e2e:
        bench_e2e(args.corpus, args.e2e_repeat, args.cpus)


if __name__ == "__main__":
    main()
