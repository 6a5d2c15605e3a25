"""Bounded memory on a large generated corpus (issue 6): the pipeline streams.

    python bench/bench_memory.py [--gb 2] [--files 16] [--keep]

Generates ``--gb`` of JSONL (documents of the shared prose corpora, each with a random line of
digits prepended so that no two are exact duplicates; near-duplicate clusters stay), runs
``python -m jobs.pipeline`` on it in its own process group (a local Ray on every core), and
samples every 0.5 s the resident memory of every process of that group (driver, GCS, raylet,
Ray workers). Prints the input size, wall time, throughput, the peak of the summed RSS and the
largest single process — the bound to compare with the machine's memory and with the input.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def generate(folder: Path, gb: float, n_files: int) -> int:
    docs = []
    for f in sorted((SHARED / "corpus").glob("*.jsonl.gz")):
        if not f.name.startswith("code-"):
            with gzip.open(f, "rt", encoding="utf-8") as fh:
                docs += [json.loads(line)["text"] for line in fh]
    rng = random.Random(0)
    folder.mkdir(parents=True)
    handles = [open(folder / f"part-{k:03d}.jsonl", "w", encoding="utf-8") for k in range(n_files)]
    total, i = 0, 0
    try:
        while total < gb * 1e9:
            text = f"{rng.getrandbits(64)}\n" + docs[i % len(docs)]
            line = json.dumps({"id": f"g{i}", "text": text}, ensure_ascii=False) + "\n"
            handles[i % n_files].write(line)
            total += len(text.encode("utf-8"))
            i += 1
    finally:
        for h in handles:
            h.close()
    return total


def rss_of_group(pgid: int) -> tuple[int, int]:
    """(sum, max) of VmRSS over the processes of process group ``pgid``."""
    from pipeline.bpe.trainer import status_bytes

    total = largest = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = open(f"/proc/{pid}/stat").read()
            if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            rss = status_bytes("VmRSS", pid) or 0
            total += rss
            largest = max(largest, rss)
        except (OSError, ValueError, IndexError):
            pass
    return total, largest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gb", type=float, default=2.0)
    ap.add_argument("--files", type=int, default=16)
    ap.add_argument("--keep", action="store_true", help="keep the generated input and output")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-mem-"))
    try:
        t = time.perf_counter()
        nbytes = generate(tmp / "in", args.gb, args.files)
        print(
            f"generated {nbytes / 1e9:.2f} GB of text in {args.files} files in "
            f"{time.perf_counter() - t:.0f} s; machine: {os.cpu_count()} cores, "
            f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"
        )
        cfg = tmp / "job.yaml"
        cfg.write_text(f"inputs:\n  - {tmp / 'in'}\noutput: {tmp / 'out'}\n", "utf-8")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}
        env.pop("RAY_ADDRESS", None)
        t = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobs.pipeline", str(cfg)],
            cwd=ROOT, env=env, start_new_session=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        peak_sum = peak_one = 0
        while proc.poll() is None:
            s, m = rss_of_group(proc.pid)
            peak_sum, peak_one = max(peak_sum, s), max(peak_one, m)
            time.sleep(0.5)
        wall = time.perf_counter() - t
        log = proc.stdout.read() if proc.stdout else ""
        if proc.returncode:
            raise SystemExit(f"pipeline failed ({proc.returncode}):\n{log[-3000:]}")
        report = json.loads((tmp / "out" / "report.json").read_text())
        print(
            f"pipeline: {wall:.0f} s, {nbytes / 1e6 / wall:.2f} MB/s "
            f"({nbytes / 1e6 / wall / (os.cpu_count() or 1):.2f} MB/s per core); kept "
            f"{report['kept_documents']:,} of {report['input_documents']:,} documents"
        )
        print(
            f"peak resident memory: {peak_sum / 2**30:.2f} GiB for driver + GCS + raylet + "
            f"workers together (largest process {peak_one / 2**30:.2f} GiB), for "
            f"{nbytes / 2**30:.2f} GiB of input"
        )
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept: {tmp}")


if __name__ == "__main__":
    main()
