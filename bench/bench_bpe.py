"""BPE training from Ray counts against ``tokenizers``' ``train_from_iterator`` (issue 5).

    python bench/bench_bpe.py [--mb 20] [--vocab-size 64000] [--pretokenizer gpt2] [--no-extend]

On the same ~20 MB of shared text (all 14 categories of ../shared/corpus, documents taken
round-robin; written as 8 Parquet shards), each side in a fresh process:

* ``tokenizers``: ``Tokenizer.train_from_iterator`` over the documents' lines (its Rust
  trainer, counting in parallel on every core) — wall time and peak RSS of its process;
* mixtrace: a local Ray is started first (its start-up is printed apart: a cluster is up
  before jobs run), then ``count_shards`` (one Ray task per shard, hash-partitioned polars
  reduce) and the trainer on the count table in a Ray task that runs the compiled loop in a
  child process (as ``mixtrace bpe train``; the loop built ahead of time, which is done once
  before any timing); wall time of counting + training, peak RSS of the driver, of each Ray
  worker (its VmHWM) and of the training step.

Then: identical merges (checked), counting throughput in MB/s per core, the training time
against the number of distinct pretokens (at 1/8, 1/4, 1/2, 1 of the text), and a projection
to 1 TB on 64 cores from those rates (Heaps' law fitted to distinct pretokens vs bytes).
Finally (unless --no-extend) the Korean extension of GPT-2: tokens per character on held-out
Korean before and after, and whether English encodes identically.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"


def load_docs(mb: float, *, prose_only: bool = False) -> list[dict]:
    """Documents round-robin over the shared categories until ``mb`` MB (``prose_only``: the
    natural languages, not the code-* sets)."""
    per_cat = []
    for f in sorted((SHARED / "corpus").glob("*.jsonl.gz")):
        cat = f.name.split(".")[0]
        if prose_only and cat.startswith("code-"):
            continue
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            per_cat.append([{**json.loads(line), "lang": cat} for line in fh])
    out, got, i = [], 0, 0
    while got < mb * 1e6 and any(i < len(d) for d in per_cat):
        for docs in per_cat:
            if i < len(docs):
                out.append(docs[i])
                got += len(docs[i]["text"].encode("utf-8"))
        i += 1
    return out


def write_shards(docs: list[dict], folder: Path, n: int = 8) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        rows = [{"id": d["id"], "text": d["text"], "lang": d["lang"]} for d in docs[k::n]]
        pq.write_table(pa.Table.from_pylist(rows), folder / f"part-{k:05d}.parquet")


HWM = """
from pipeline.bpe.trainer import peak_rss as hwm  # VmHWM (ru_maxrss carries the parent's); no numba
"""

HF_CHILD = (
    """
import glob, json, sys, time
sys.path.insert(0, {root!r})
import pyarrow.parquet as pq
from forensics.training import train_bpe
"""
    + HWM
    + """
def texts():  # streamed from the shards, batch by batch: tokenizers holds only its counts
    for f in sorted(glob.glob({shards!r} + "/*.parquet")):
        for b in pq.ParquetFile(f).iter_batches(batch_size=64, columns=["text"]):
            yield from b.column(0).to_pylist()
t = time.perf_counter()
tok = train_bpe(texts(), {vocab}, pretokenizer={pre!r})
wall = time.perf_counter() - t
open({out!r}, "w").write(tok)
print(json.dumps({{"wall": wall, "rss": hwm()}}))
"""
)

OURS_CHILD = (
    """
import json, os, sys, time
sys.path.insert(0, {root!r})
"""
    + HWM
    + """
import ray
from forensics.raytools import ensure_ray
t = time.perf_counter()
ensure_ray(None, num_cpus={cpus})
ray.get([ray.remote(lambda: 0).remote() for _ in range({cpus})])  # workers up
ray_start = time.perf_counter() - t
import threading
def processes():  # this driver's descendants (Ray's daemons and workers): pid -> command line
    parent, cmds = {{}}, {{}}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = open(f"/proc/{{pid}}/stat").read()
            parent[int(pid)] = int(stat.rsplit(")", 1)[1].split()[1])
            cmds[int(pid)] = open(f"/proc/{{pid}}/cmdline", "rb").read()
        except OSError:
            pass
    def mine(pid):  # not another cluster's processes
        while pid > 1:
            pid = parent.get(pid, 0)
            if pid == os.getpid():
                return True
        return False
    return {{pid: cmd for pid, cmd in cmds.items() if mine(pid)}}
from pipeline.bpe.trainer import status_bytes
def vmrss(pid):
    return status_bytes("VmRSS", pid) or 0
peaks, cmdlines, done, together = {{}}, {{}}, threading.Event(), [0]
def sample():  # every 0.1 s: the peak of each process (a worker that Ray replaces mid-run
    while True:  # keeps its last one here) and of all of them together, at one time
        now = vmrss(None)
        for pid, cmd in processes().items():
            h = hwm(pid)
            if h is not None:
                peaks[pid] = max(peaks.get(pid, 0), h)
                cmdlines[pid] = cmd  # a worker renames itself ray::... once up
                now += vmrss(pid)
        together[0] = max(together[0], now)
        if done.wait(0.1):
            break
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
from pipeline.bpe.count import count_shards
from pipeline.bpe.train import train_from_table
t = time.perf_counter()
table = count_shards({shards!r}, {pre!r})
t_count = time.perf_counter() - t
rss_count = hwm()
t = time.perf_counter()
def train_task(table, vocab):  # as mixtrace bpe train: a Ray task that trains in a lean child
    tok, rep = train_from_table(table, vocab)
    return tok, rep, hwm()
from pipeline.bpe.train import TRAIN_TASK_OPTIONS
tok, rep, task_rss = ray.get(ray.remote(**TRAIN_TASK_OPTIONS)(train_task).remote(table, {vocab}))
t_train = time.perf_counter() - t
done.set()
sampler.join()
# Ray workers (the training child's own figure comes from itself)
workers = sorted((h for pid, h in peaks.items() if cmdlines[pid].startswith(b"ray::")
                  and b"Agent" not in cmdlines[pid]), reverse=True)
all_rss = together[0]  # driver, Ray's daemons (GCS, raylet, agents), workers, the child
open({out!r}, "w").write(tok)
print(json.dumps({{"ray_start": ray_start, "count": t_count, "train": t_train, "words": table.num_words,
    "driver_rss": hwm(), "driver_rss_count": rss_count,
    "worker_rss": workers, "bytes": table.stats["total_bytes"],
    "train_task_rss": task_rss, "trainer_rss": rep["trainer_peak_rss"],
    "engine": rep["trainer_engine"], "all_rss": all_rss}}))
"""
)

TRAIN_CHILD = (
    """
import json, sys, time
sys.path.insert(0, {root!r})
"""
    + HWM
    + """
from pipeline.bpe.count import CountTable
from pipeline.bpe.train import train_from_table
table = CountTable.read({counts!r})
t = time.perf_counter()
tok, rep = train_from_table(table, {vocab})
print(json.dumps({{"train": time.perf_counter() - t, "words": table.num_words,
    "rss": hwm(),
    "trainer_rss": rep["trainer_peak_rss"]}}))
"""
)


def child(code: str) -> dict:
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ}
    )
    if r.returncode:
        raise SystemExit(f"child failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def merges_of(path: str) -> list:
    return [
        tuple(m) if isinstance(m, list) else tuple(m.split(" "))
        for m in json.loads(Path(path).read_text())["model"]["merges"]
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=20.0)
    ap.add_argument("--vocab-size", type=int, default=64000)
    ap.add_argument("--pretokenizer", default="gpt2")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--no-extend", action="store_true")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")

    from pipeline.bpe import trainer_aot

    t = time.perf_counter()
    mod, how = trainer_aot.load()  # built once per machine (a cache), not inside the timings
    print(
        f"training loop: the ahead-of-time build ({how}, {time.perf_counter() - t:.1f} s)"
        if mod is not None
        else f"training loop: numba's JIT ({how})"
    )
    docs = load_docs(args.mb)
    nbytes = sum(len(d["text"].encode("utf-8")) for d in docs)
    print(f"text: {len(docs):,} documents, {nbytes / 1e6:.1f} MB (14 categories, round-robin)")
    with tempfile.TemporaryDirectory(prefix="bench-bpe-") as tmp:
        shards = Path(tmp) / "shards"
        write_shards(docs, shards)
        fmt = dict(root=str(ROOT), shards=str(shards), vocab=args.vocab_size, pre=args.pretokenizer)

        hf = child(HF_CHILD.format(**fmt, out=f"{tmp}/hf.json"))
        print(
            f"tokenizers train_from_iterator: {hf['wall']:.1f} s, peak RSS {hf['rss'] / 2**20:.0f} MB"
        )
        ours = child(OURS_CHILD.format(**fmt, out=f"{tmp}/ours.json", cpus=args.cpus))
        wall = ours["count"] + ours["train"]
        peak = max(
            [ours["driver_rss"], *ours["worker_rss"], ours["train_task_rss"], ours["trainer_rss"]]
        )
        step = ours["train_task_rss"] + ours["trainer_rss"]
        print(
            f"mixtrace (Ray started in {ours['ray_start']:.1f} s, not counted): count "
            f"{ours['count']:.1f} s + train {ours['train']:.1f} s = {wall:.1f} s "
            f"({wall / hf['wall']:.2f}x tokenizers)"
        )
        print(
            f"  peak RSS: driver {ours['driver_rss'] / 2**20:.0f} MB (after counting "
            f"{ours['driver_rss_count'] / 2**20:.0f} MB), Ray workers "
            + ", ".join(f"{r / 2**20:.0f}" for r in ours["worker_rss"])
            + f" MB, training child ({ours['engine']}) {ours['trainer_rss'] / 2**20:.0f} MB; "
            "largest process "
            f"{peak / 2**20:.0f} MB = {peak / hf['rss']:.2f}x tokenizers"
        )
        print(
            f"  training step, the sum of its two processes' peaks (an upper bound; the Ray task "
            f"{ours['train_task_rss'] / 2**20:.0f} MB + its child): {step / 2**20:.0f} MB = "
            f"{step / hf['rss']:.2f}x tokenizers"
        )
        total = ours["all_rss"]
        print(
            f"  every process of the run together (driver, Ray's daemons and workers, the "
            f"training child; their resident sizes summed, sampled every 0.1 s): peak "
            f"{total / 2**20:.0f} MB = "
            f"{total / hf['rss']:.2f}x tokenizers' one process"
        )
        same = merges_of(f"{tmp}/hf.json") == merges_of(f"{tmp}/ours.json")
        print(f"  identical merges: {same} ({len(merges_of(f'{tmp}/ours.json')):,} merges)")
        rate = ours["bytes"] / 1e6 / ours["count"] / args.cpus
        print(f"  counting: {rate:.2f} MB/s per core ({args.cpus} Ray workers)")

        # training time vs distinct pretokens, and Heaps' law
        from pipeline.bpe.count import count_shards

        sizes, words, trains, mem_ours, mem_hf = [], [], [], [], []
        for frac in (8, 4, 2, 1):
            part = docs[: max(1, len(docs) // frac)]
            sub = Path(tmp) / f"s{frac}"
            write_shards(part, sub / "shards")
            table = count_shards(str(sub / "shards"), args.pretokenizer, use_ray=False)
            table.write(str(sub / "counts"))
            r = child(
                TRAIN_CHILD.format(
                    root=str(ROOT), counts=str(sub / "counts"), vocab=args.vocab_size
                )
            )
            hf_part = (
                hf
                if frac == 1
                else child(
                    HF_CHILD.format(**{**fmt, "shards": str(sub / "shards")}, out=f"{sub}/hf.json")
                )
            )
            sizes.append(table.stats["total_bytes"])
            words.append(r["words"])
            trains.append(r["train"])
            mem_ours.append(r["trainer_rss"] / 2**20)
            mem_hf.append(hf_part["rss"] / 2**20)
            print(
                f"  {sizes[-1] / 1e6:5.1f} MB: {words[-1]:,} distinct pretokens, train "
                f"{trains[-1]:.1f} s, trainer peak RSS {mem_ours[-1]:.0f} MB "
                f"(its parent, holding the table: {r['rss'] / 2**20:.0f} MB); tokenizers "
                f"{mem_hf[-1]:.0f} MB ({mem_ours[-1] / mem_hf[-1]:.2f}x)"
            )
    import numpy as np

    mb = np.array(sizes) / 1e6
    so, io = np.polyfit(mb, mem_ours, 1)
    sh, ih = np.polyfit(mb, mem_hf, 1)
    cross = (io - 0.5 * ih) / (0.5 * sh - so) if 0.5 * sh > so else float("inf")
    ratios = np.array(mem_ours) / np.array(mem_hf)
    where = (
        f"the child is below 0.5x of tokenizers at every size measured "
        f"({ratios.min():.2f}-{ratios.max():.2f}x)"
        if ratios.max() <= 0.5
        else f"by these lines the child is at 0.5x of tokenizers from {cross:.0f} MB of text on"
        + (f" (an extrapolation beyond {mb[-1]:.0f} MB)" if cross > mb[-1] else "")
    )
    print(
        f"peak memory against text size (least squares over the four sizes): training child "
        f"{io:.0f} MB + {so:.1f} MB per MB of text, tokenizers {ih:.0f} MB + {sh:.1f} MB per MB"
        f" (slope ratio {so / sh:.2f}); {where}"
    )
    hb = np.polyfit(np.log(sizes), np.log(words), 1)  # words = K * bytes^beta
    tw = np.polyfit(np.log(words), np.log(trains), 1)  # train = c * words^gamma
    tb = 1e12
    w_tb = math.exp(hb[1]) * tb ** hb[0]
    train_tb = math.exp(tw[1]) * w_tb ** tw[0]
    count_tb = tb / 1e6 / rate / 64
    print(
        f"projection, 1 TB on 64 cores: counting {count_tb / 3600:.1f} h at the measured "
        f"{rate:.2f} MB/s per core; Heaps' law (beta {hb[0]:.2f}) gives {w_tb / 1e6:.0f} M "
        f"distinct pretokens (before min-count pruning), training ~{train_tb / 3600:.1f} h on one "
        f"node (time ~ words^{tw[0]:.2f}); min-count pruning cuts the words (and the time) "
        f"for a real run"
    )

    if not args.no_extend:
        extension_check()


def extension_check() -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tokenizers import Tokenizer

    from pipeline.bpe.extend import extend_tokenizer, load_base_tokenizer

    with gzip.open(SHARED / "corpus" / "ko.jsonl.gz", "rt", encoding="utf-8") as fh:
        ko = [json.loads(line) for line in fh]
    with gzip.open(SHARED / "corpus" / "en.jsonl.gz", "rt", encoding="utf-8") as fh:
        en = [json.loads(line)["text"] for line in fh]
    train, held = ko[::2], ko[1::2]
    with tempfile.TemporaryDirectory(prefix="bench-ext-") as tmp:
        pq.write_table(
            pa.Table.from_pylist([{"id": d["id"], "text": d["text"]} for d in train]),
            f"{tmp}/ko.parquet",
        )
        t = time.perf_counter()
        res = extend_tokenizer(
            SHARED / "tokenizers" / "gpt2", tmp, 20000, check_texts=en, use_ray=False
        )
        wall = time.perf_counter() - t
    base = Tokenizer.from_str(json.dumps(load_base_tokenizer(SHARED / "tokenizers" / "gpt2")))
    ext = Tokenizer.from_str(res.tokenizer_json)
    texts = [d["text"] for d in held]
    chars = sum(map(len, texts))
    a = sum(len(e.ids) for e in base.encode_batch(texts))
    b = sum(len(e.ids) for e in ext.encode_batch(texts))
    checks = res.report["unchanged_checks"]
    hangul = [any(0xAC00 <= ord(ch) <= 0xD7A3 for ch in t) for t in en]
    plain = [c for c, h in zip(checks, hangul, strict=True) if not h]
    with_h = [c for c, h in zip(checks, hangul, strict=True) if h]
    print(
        f"extension of GPT-2 on {sum(len(d['text'].encode()) for d in train) / 1e6:.1f} MB of "
        f"Korean (asked 20,000; added {len(res.new_tokens):,} of count >= 2) in {wall:.1f} s: "
        f"held-out Korean {a / chars:.3f} -> {b / chars:.3f} tokens per character "
        f"({100 * (1 - b / a):.0f} % fewer); English documents encoded identically: "
        f"{sum(c['identical'] for c in plain)}/{len(plain)} without Hangul, "
        f"{sum(c['identical'] for c in with_h)}/{len(with_h)} with Hangul syllables (they may "
        f"use the new tokens); unreachable new tokens: "
        f"{len(res.report['unreachable_new_tokens'])}"
    )


if __name__ == "__main__":
    main()
