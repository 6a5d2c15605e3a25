"""Bounded memory on a large generated corpus (issue 6): the pipeline streams.

    python bench/bench_memory.py [--gb 0.1,0.5,2] [--files 32] [--bound-gib 3] [--keep]

For each size in ``--gb``: generates that much JSONL text (documents of the shared prose
corpora, each with a random line of digits prepended so that no two are exact duplicates;
near-duplicate clusters stay), runs ``python -m jobs.pipeline`` on it in a session of its own
(a local Ray on every core) and samples every 0.5 s the memory of every process of that
session: the driver, the GCS, the raylet and its agents, and the Ray workers. (Ray workers put
themselves in process groups of their own, so a process-group sample would miss the processes
that do the work; they keep the session.)

Two sums are printed: PSS (proportional set size: a page shared by k processes counts 1/k in
each, so the shared-memory object store is counted once) — the memory the run really holds —
and RSS (shared pages counted in every process that maps them, an upper bound). The bound is
checked against the peak PSS sum; the script exits 1 when a size exceeds it.
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


def session_memory(sid: int) -> tuple[int, int, int, int, str]:
    """(PSS sum, RSS sum, largest RSS, number of processes, the largest one's name) over the
    processes of session ``sid``."""
    from pipeline.bpe.trainer import status_bytes

    pss = rss = largest = n = 0
    name = ""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            if int(fields[3]) != sid:  # state ppid pgrp session
                continue
            r = status_bytes("VmRSS", pid)
            p = status_bytes("Pss", pid, "smaps_rollup")
            if r is None or p is None:
                continue  # the process ended between the listing and the read
            if r > largest:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    cmd = fh.read().replace(b"\0", b" ").decode("utf-8", "replace").split()
                name = " ".join(cmd[:3])[:60]
        except (OSError, ValueError, IndexError):
            continue  # the process ended between the listing and the read
        pss, rss, largest, n = pss + p, rss + r, max(largest, r), n + 1
    return pss, rss, largest, n, name


def run_size(gb: float, n_files: int, keep: bool) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-mem-"))
    try:
        t = time.perf_counter()
        nbytes = generate(tmp / "in", gb, n_files)
        print(
            f"generated {nbytes / 1e9:.2f} GB of text in {n_files} files in "
            f"{time.perf_counter() - t:.0f} s",
            flush=True,
        )
        cfg = tmp / "job.yaml"
        cfg.write_text(f"inputs:\n  - {tmp / 'in'}\noutput: {tmp / 'out'}\n", "utf-8")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}
        env.pop("RAY_ADDRESS", None)
        t = time.perf_counter()
        log_path = tmp / "job.log"  # a file, not a pipe: a full pipe would block the job
        with open(log_path, "w") as log_fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "jobs.pipeline", str(cfg)],
                cwd=ROOT, env=env, start_new_session=True, stdout=log_fh, stderr=subprocess.STDOUT,
            )  # fmt: skip
        peak = {"pss": 0, "rss": 0, "largest": 0, "procs": 0}
        largest_name = ""
        while proc.poll() is None:
            pss, rss, largest, n, name = session_memory(proc.pid)
            if largest > peak["largest"]:
                largest_name = name
            for k, v in (("pss", pss), ("rss", rss), ("largest", largest), ("procs", n)):
                peak[k] = max(peak[k], v)
            time.sleep(0.5)
        wall = time.perf_counter() - t
        log = log_path.read_text("utf-8", errors="replace")
        if proc.returncode:
            raise SystemExit(f"pipeline failed ({proc.returncode}):\n{log[-3000:]}")
        report = json.loads((tmp / "out" / "report.json").read_text())
        cores = os.cpu_count() or 1
        print(
            f"  pipeline: {wall:.0f} s, {nbytes / 1e6 / wall:.2f} MB/s "
            f"({nbytes / 1e6 / wall / cores:.2f} MB/s per core); kept "
            f"{report['kept_documents']:,} of {report['input_documents']:,} documents"
        )
        print(
            f"  peak memory of the session's {peak['procs']} processes (driver, GCS, raylet, "
            f"agents, workers): PSS {peak['pss'] / 2**30:.2f} GiB, RSS {peak['rss'] / 2**30:.2f}"
            f" GiB (largest process {peak['largest'] / 2**30:.2f} GiB: {largest_name}), for "
            f"{nbytes / 2**30:.2f} GiB of input",
            flush=True,
        )
        return {"input_gib": nbytes / 2**30, "pss_gib": peak["pss"] / 2**30, "seconds": wall}
    finally:
        if keep:
            print(f"  kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gb", default="2", help="comma-separated sizes in GB (default 2)")
    ap.add_argument("--files", type=int, default=32)
    ap.add_argument("--bound-gib", type=float, default=3.0, help="stated bound on peak PSS")
    ap.add_argument("--keep", action="store_true", help="keep the generated input and output")
    args = ap.parse_args()
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"machine: {os.cpu_count()} cores, {total:.0f} GiB; bound {args.bound_gib} GiB PSS")
    rows = [run_size(float(g), args.files, args.keep) for g in args.gb.split(",")]
    over = [r for r in rows if r["pss_gib"] > args.bound_gib]
    for r in rows:
        verdict = "over the bound" if r in over else "within the bound"
        print(
            f"input {r['input_gib']:.2f} GiB: peak PSS {r['pss_gib']:.2f} GiB "
            f"({r['pss_gib'] / r['input_gib']:.2f}x the input), {verdict}"
        )
    if over:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
