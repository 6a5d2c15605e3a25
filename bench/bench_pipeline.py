"""Throughput of the corpus pipeline stages, and of datatrove on the same filters and data.

    python bench/bench_pipeline.py [--corpus ../shared/corpus/ko.jsonl.gz] [--repeat 2] [--no-e2e]

Prints MB/s per core (one process, single-threaded, input bytes of each stage / its time) for
each clean stage, the clean stages together, MinHash signatures; then, on the same (normalised)
documents, side by side: datatrove's filters through datatrove's own ``BaseFilter.run`` and
mixtrace's vectorised versions of them (same decisions: checked here), py3langid per document
and the batch classifier (same labels: checked here), datatrove's MinHash signature stage and
mixtrace's; the whole clean task of one shard in one process (read, steps, staging Parquet,
dedup keys: what one Ray task does); and finally the whole pipeline end to end on a local Ray
(bytes read / wall time / CPUs, and the clean phase alone). Also prints dedup precision/recall
of both implementations on generated near-duplicates.
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
import pyarrow.compute as pc  # noqa: E402

from pipeline.config import build_steps, load_config  # noqa: E402


def load_texts(path: str, repeat: int) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        texts = [json.loads(line)["text"] for line in fh]
    return texts * repeat


def joined_texts(texts: list[str], copies: int) -> list[str]:
    """``copies`` times the corpus without repeating a document: copy 0 is the corpus, copy
    ``k`` joins each document ``i`` with document ``i + k``. (A plain repeat makes every copy
    an exact duplicate, which the write phase then drops cheaply: a flattering end-to-end rate.)
    Pairs that share a long document stay near duplicates, as in real crawls."""
    n = len(texts)
    out = list(texts)
    for k in range(1, copies):
        out += [texts[i] + "\n\n" + texts[(i + k) % n] for i in range(n)]
    return out


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
    cpu: dict[str, float] = {}
    for lo in range(0, len(texts), batch):
        t = base_table(texts[lo : lo + batch])
        for s in steps:
            c0 = time.process_time()
            t, _ = s(t)
            cpu[s.name] = cpu.get(s.name, 0.0) + time.process_time() - c0
    print(
        f"\n== mixtrace steps (warm), one core, {total_in / 1e6:.2f} MB Korean ({len(texts)} docs)"
    )
    clean_s = 0.0
    for s in steps:
        st = s.stats
        if s.name != "dedup_signatures":
            clean_s += st.seconds
        target = "; target >= 2" if s.name == "dedup_signatures" else ""
        print(
            f"{s.name:20s} {mbps(st.bytes_in, st.seconds)}   in {st.bytes_in / 1e6:6.2f} MB, "
            f"{st.docs_in - st.docs_out} removed, {st.seconds:6.2f} s{target}"
        )
    print(
        f"{'clean stages (sum)':20s} {mbps(total_in, clean_s)}   (input bytes / summed time; "
        "target >= 1)"
    )
    clean_cpu = sum(v for k, v in cpu.items() if k != "dedup_signatures")
    print(
        f"{'  same, CPU time':20s} {total_in / 1e6 / clean_cpu:8.2f} MB per CPU-second "
        f"(dedup_signatures {total_in / 1e6 / cpu['dedup_signatures']:.2f})"
    )


def _normalised(texts: list[str]) -> list[str]:
    from pipeline.normalize import Normalize

    t = pa.table({"text": texts, "n_bytes": [0] * len(texts)})
    return Normalize()(t)[0]["text"].to_pylist()


def bench_datatrove(texts: list[str]) -> None:
    """datatrove's filters and MinHash, py3langid, and mixtrace's versions, same documents."""
    from datatrove.data import Document
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
    from datatrove.pipeline.filters import (
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )
    from datatrove.utils.hashing import HashConfig

    from pipeline.dedup import MinHasher
    from pipeline.filters import FineWebQuality, GopherQuality, GopherRepetition, SpaceWordTokenizer
    from pipeline.langid import batch_classifier, load_identifier

    cfg = load_config()["stages"]
    tok = SpaceWordTokenizer()
    texts = _normalised(texts)

    def ko(name):
        p = dict(cfg[name]["default"])
        p.update(cfg[name]["ko"] or {})
        return {
            k: (tuple(tuple(x) for x in v) if k.endswith("n_grams") else v) for k, v in p.items()
        }

    nbytes = sum(len(t.encode()) for t in texts)
    print(
        f"\n== same {nbytes / 1e6:.2f} MB (normalised Korean, Korean thresholds, whitespace words), "
        "one core: datatrove (its BaseFilter.run) vs mixtrace (vectorised, same decisions)"
    )
    for name, dt_cls, ours_cls in (
        ("fineweb_quality", FineWebQualityFilter, FineWebQuality),
        ("gopher_repetition", GopherRepetitionFilter, GopherRepetition),
        ("gopher_quality", GopherQualityFilter, GopherQuality),
    ):
        f = dt_cls(language=tok, **ko(name))
        docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
        t0 = time.perf_counter()
        kept_ids = {d.id for d in f.run(iter(docs))}
        dt_s = time.perf_counter() - t0
        ours = ours_cls({k: v for k, v in cfg[name].items() if k != "enabled"})
        ours.decide_texts(texts[:20], "ko")  # warm (regex classes)
        t0 = time.perf_counter()
        reasons = []
        for lo in range(0, len(texts), 512):
            reasons += ours.decide_texts(texts[lo : lo + 512], "ko")
        our_s = time.perf_counter() - t0
        same = {str(i) for i, r in enumerate(reasons) if r is None} == kept_ids
        print(
            f"{name:20s} datatrove {mbps(nbytes, dt_s)}   mixtrace {mbps(nbytes, our_s)}   "
            f"x{dt_s / our_s:4.1f}   {len(texts) - len(kept_ids)} removed, same kept set: {same}"
        )
    ident = load_identifier()
    heads = pc.utf8_slice_codeunits(pa.array(texts), 0, 1000).to_pylist()
    t0 = time.perf_counter()
    ref = [ident.classify(h)[0] for h in heads]
    dt_s = time.perf_counter() - t0
    bc = batch_classifier()
    t0 = time.perf_counter()
    labels = []
    for lo in range(0, len(heads), 512):
        labels += bc.classify(heads[lo : lo + 512])[0]
    our_s = time.perf_counter() - t0
    print(
        f"{'langid (1000 chars)':20s} py3langid {mbps(nbytes, dt_s)}   batch    {mbps(nbytes, our_s)}   "
        f"x{dt_s / our_s:4.1f}   same labels: {labels == ref}   (document bytes / time)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        mc = MinhashConfig(hash_config=HashConfig(precision=64, hash_fc="sha1"))
        sig = MinhashDedupSignature(f"{tmp}/sigs", config=mc, language=tok)
        docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
        t0 = time.perf_counter()
        sig.run(iter(docs), 0, 1)
        dt_s = time.perf_counter() - t0
    mh = MinHasher()
    t0 = time.perf_counter()
    for lo in range(0, len(texts), 512):
        s, _ = mh.signatures(pa.array(texts[lo : lo + 512]))
        mh.band_keys(s)
    our_s = time.perf_counter() - t0
    print(
        f"{'minhash signatures':20s} datatrove {mbps(nbytes, dt_s)}   mixtrace {mbps(nbytes, our_s)}   "
        f"x{dt_s / our_s:4.1f}   (datatrove: sha1, incl. its bucket sort; mixtrace: xxh3 words + numpy; 14x8, 5-grams)"
    )


def _write_shards(texts: list[str], folder: str, n_shards: int) -> None:
    per = max(1, -(-len(texts) // n_shards))
    for k in range(0, len(texts), per):
        with gzip.open(f"{folder}/part{k:06d}.jsonl.gz", "wt", encoding="utf-8") as fh:
            for i, t in enumerate(texts[k : k + per]):
                fh.write(json.dumps({"id": f"{k}-{i}", "text": t}, ensure_ascii=False) + "\n")


def bench_clean_task(corpus: str, repeat: int) -> None:
    """What one Ray task of the clean phase does, in this process (no Ray): the executor's
    overhead is the difference with the end-to-end clean phase per core."""
    from pipeline.executor import clean_shard, plan_shards

    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(f"{tmp}/in")
        _write_shards(load_texts(corpus, repeat), f"{tmp}/in", 1)
        cfg = load_config(inputs=[f"{tmp}/in"], output=f"{tmp}/out")
        shard = plan_shards(cfg)[0][0]
        clean_shard(shard, cfg, f"{tmp}/warm")  # imports, model, regex classes
        t0 = time.perf_counter()
        st = clean_shard(shard, cfg, f"{tmp}/out")
        dt = time.perf_counter() - t0
    mb = st["input_bytes"] / 1e6
    print(
        f"\n== one clean task in one process (gzip JSONL -> steps -> staging Parquet + dedup keys), "
        f"warm: {mb:.2f} MB in {dt:.2f} s = {mb / dt:.2f} MB/s/core (wall), "
        f"{mb / st['cpu_seconds']:.2f} MB per CPU-second"
    )
    print("   " + ", ".join(f"{s['name']} {s['seconds']:.2f}" for s in st["steps"]) + " (s)")


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


def _tree_cpu_seconds(root_pid: int) -> float:
    """CPU seconds (user + system, including reaped children) of ``root_pid`` and every live
    descendant (Linux ``/proc``): the driver, Ray's GCS/raylet/agents and the workers."""
    procs: dict[int, tuple[int, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the name: state ppid ... utime(14) stime(15) cutime(16) cstime(17)
        ppid = int(fields[1])
        cpu = sum(int(x) for x in fields[11:15]) / tick
        procs[int(entry)] = (ppid, cpu)
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root_pid]
    while todo:
        pid = todo.pop()
        total += procs.get(pid, (0, 0.0))[1]
        todo.extend(children.get(pid, []))
    return total


def _folder_bytes(folder: str) -> int:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def _run_e2e(texts: list[str], cpus: int, tmp: str) -> tuple[dict, float, float, dict]:
    """The pipeline on ``texts`` (4 shards per core) keeping its work folder: the report, wall
    and CPU seconds, and the bytes of each work folder."""
    from pipeline.executor import WORK, run_pipeline

    os.makedirs(f"{tmp}/in")
    # 4 shards per core, so that every core has work until close to the end
    _write_shards(texts, f"{tmp}/in", 4 * cpus)
    cfg = load_config(inputs=[f"{tmp}/in"], output=f"{tmp}/out")
    cfg["executor"]["keep_work"] = True  # to measure what the phases exchange
    cpu0 = _tree_cpu_seconds(os.getpid())
    t0 = time.perf_counter()
    rep = run_pipeline(cfg)
    dt = time.perf_counter() - t0
    cpu = _tree_cpu_seconds(os.getpid()) - cpu0
    kinds = ("staging", "bands", "exact", "dedup")
    work = {k: _folder_bytes(f"{tmp}/out/{WORK}/{k}") for k in kinds}
    return rep, dt, cpu, work


def bench_e2e(corpus: str, repeat: int, cpus: int) -> dict:
    """The whole pipeline on a local Ray; returns the figures that ``bench/projection.py``
    scales up: the rate per core, and the bytes that the phases hand to each other through the
    output folder (on a cluster: shared storage) per document. The rate is measured on
    ``repeat`` joined copies of the corpus (long enough to keep the cores busy); the exchanged
    bytes on the corpus once, whose compressed staging files are not shrunk by repeated text."""
    from forensics.raytools import ensure_ray

    ensure_ray(None, num_cpus=cpus)
    base = load_texts(corpus, 1)
    with tempfile.TemporaryDirectory() as tmp:
        rep, dt, cpu, _ = _run_e2e(joined_texts(base, repeat), cpus, tmp)
    mb = rep["input_bytes"] / 1e6
    sec = rep["seconds"]
    print(
        f"\n== end to end on a local Ray, {cpus} CPUs, {rep['shards']} shards: {mb:.2f} MB in "
        f"{dt:.1f} s = {mb / dt / cpus:.2f} MB/s/core (wall; target >= 0.6); clean phase alone "
        f"{mb / sec['clean'] / cpus:.2f} MB/s/core"
    )
    print(
        f"   CPU seconds of the driver and the whole Ray cluster during the run: {cpu:.1f} "
        f"= {mb / max(cpu, 1e-9):.2f} MB per CPU-second (the per-core rate with the cores "
        f"fully ours); inside the clean tasks {sec['clean_tasks_cpu']:.1f} CPU-s "
        f"({mb / max(sec['clean_tasks_cpu'], 1e-9):.2f} MB/CPU-s), write tasks "
        f"{sec['write_tasks_cpu']:.1f} CPU-s"
    )
    dups = sum(n for n, _ in rep["removed_by_stage"].get("dedup", {}).values())
    print(
        f"   phases, s: {sec}; kept {rep['kept_documents']} of {rep['input_documents']} "
        f"({dups} removed as duplicates: {repeat} copies joined pairwise)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        once, _, _, work = _run_e2e(base, cpus, tmp)
    docs, nbytes = once["input_documents"], once["input_bytes"]
    keys = work["bands"] + work["exact"] + work["dedup"]
    print(
        f"   exchanged through the output folder (the corpus once, {nbytes / 1e6:.2f} MB), per "
        f"input document: staging Parquet {work['staging'] / docs:.0f} B (written by the clean "
        f"task, read by the write task), dedup keys and clusters {keys / docs:.0f} B; together "
        f"{(work['staging'] + keys) / nbytes:.0%} of the input bytes ({nbytes / docs:.0f} B a "
        "document)"
    )
    return {
        "corpus": Path(corpus).name,
        "cpus": cpus,
        "input_bytes": rep["input_bytes"],
        "input_documents": rep["input_documents"],
        "wall_seconds": dt,
        "mb_per_s_per_core": mb / dt / cpus,
        "duplicates_removed": dups,
        "exchange": {
            "input_bytes": nbytes,
            "input_documents": docs,
            "staging_bytes": work["staging"],
            "dedup_key_bytes": keys,
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default=str(ROOT.parent / "shared" / "corpus" / "ko.jsonl.gz"))
    ap.add_argument("--repeat", type=int, default=1, help="repeat the corpus this many times")
    ap.add_argument("--e2e-repeat", type=int, default=4)
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-e2e", action="store_true")
    ap.add_argument("--only-e2e", action="store_true", help="skip the single-core benchmarks")
    ap.add_argument("--save", help="write the end-to-end figures to this JSON (for projection.py)")
    args = ap.parse_args()
    if not args.only_e2e:
        texts = load_texts(args.corpus, args.repeat)
        bench_steps(texts)
        bench_datatrove(texts)
        bench_clean_task(args.corpus, args.e2e_repeat // 2 or 1)
        bench_dedup_quality(Path(args.corpus).parent)
    if not args.no_e2e:
        e2e = bench_e2e(args.corpus, args.e2e_repeat, args.cpus)
        if args.save:
            Path(args.save).write_text(json.dumps(e2e, indent=1) + "\n", "utf-8")


if __name__ == "__main__":
    main()
