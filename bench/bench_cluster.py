"""Pipeline throughput on a local multi-node Ray cluster: 1 and 2 worker nodes (issue 6).

    python bench/bench_cluster.py [--mb 16] [--workers 1,2] [--corpus ko] [--save FILE]

For each worker count: ``ray.cluster_utils.Cluster`` with a head node without CPUs and N
worker nodes of one CPU each (separate raylets and object stores on this machine); the corpus
pipeline (all stages, dedup included) over the same input (the shared Korean corpus, made as
large as asked without exact repeats by bench_pipeline's ``joined_texts``, in 8 JSONL files);
wall time, MB/s, MB/s per worker CPU and the scaling efficiency T(1) / (N · T(N)). On this 2-core machine N = 2 uses every core, so the driver,
raylets and GCS compete with the workers: an upper bound on the overhead a real cluster pays.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"


def write_inputs(folder: Path, mb: float, corpus: str, n_files: int = 8) -> int:
    from bench_pipeline import joined_texts, load_texts  # this folder is on sys.path

    texts = load_texts(str(SHARED / "corpus" / f"{corpus}.jsonl.gz"), 1)
    size = sum(len(t.encode("utf-8")) for t in texts)
    # joined_texts: copy 0 is the corpus, each further copy twice its size
    texts = joined_texts(texts, max(1, round(1 + (mb * 1e6 / size - 1) / 2)))
    folder.mkdir(parents=True)
    for k in range(n_files):
        with open(folder / f"part-{k:02d}.jsonl", "w", encoding="utf-8") as fh:
            for i, t in enumerate(texts[k::n_files]):
                fh.write(json.dumps({"id": f"{k}-{i}", "text": t}, ensure_ascii=False) + "\n")
    return sum(len(t.encode("utf-8")) for t in texts)


def run(n_workers: int, inputs: Path, out: Path) -> float:
    import ray
    from ray.cluster_utils import Cluster

    from pipeline.config import load_config
    from pipeline.executor import run_pipeline

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(n_workers):
        cluster.add_node(num_cpus=1, object_store_memory=300 * 2**20)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        ray.get([ray.remote(lambda: 0).remote() for _ in range(n_workers)])  # workers up
        cfg = load_config(inputs=[str(inputs)], output=str(out))
        t = time.perf_counter()
        run_pipeline(cfg)
        return time.perf_counter() - t
    finally:
        ray.shutdown()
        cluster.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=16.0)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--corpus", default="ko", help="a category of ../shared/corpus")
    ap.add_argument("--save", help="write the figures to this JSON (for projection.py)")
    args = ap.parse_args()
    os.environ.pop("RAY_ADDRESS", None)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        inputs = Path(tmp) / "in"
        nbytes = write_inputs(inputs, args.mb, args.corpus)
        print(f"input: {nbytes / 1e6:.1f} MB of {args.corpus} text in 8 JSONL files")
        times = {}
        for n in (int(x) for x in args.workers.split(",")):
            wall = run(n, inputs, Path(tmp) / f"out{n}")
            times[n] = wall
            mbps = nbytes / 1e6 / wall
            print(
                f"{n} worker node(s) x 1 CPU: {wall:.1f} s, {mbps:.2f} MB/s, "
                f"{mbps / n:.2f} MB/s per worker CPU"
                + (f", scaling efficiency {times[1] / (n * wall):.0%}" if 1 in times else "")
            )
    if args.save and 1 in times and len(times) > 1:
        n = max(times)
        out = {
            "corpus": args.corpus,
            "input_bytes": nbytes,
            "seconds": {str(k): v for k, v in times.items()},
            "workers": n,
            "efficiency": times[1] / (n * times[n]),
        }
        Path(args.save).write_text(json.dumps(out, indent=1) + "\n", "utf-8")


if __name__ == "__main__":
    main()
