"""A pipeline job killed with SIGKILL midway (driver and its local Ray with it) and run again
writes exactly what an undisturbed run writes: no document lost or doubled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from pipeline.config import load_config
from pipeline.executor import run_pipeline

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
FILES = ["ko", "en", "de", "ja", "fr", "es", "ru", "zh"]


def _config(path: Path, out: Path) -> Path:
    inputs = "".join(f"  - path: {SAMPLE / (f + '.jsonl.gz')}\n" for f in FILES)
    path.write_text(
        f"inputs:\n{inputs}output: {out}\nexecutor:\n  batch_size: 16\n  num_cpus: 1\n"
        "writer:\n  row_group_bytes: 20000\n  file_bytes: 60000\n",
        "utf-8",
    )
    return path


def test_sigkill_midway_then_rerun_gives_identical_output(ray_session, tmp_path):
    killed = tmp_path / "killed"
    cfg = _config(tmp_path / "job.yaml", killed)
    env = {**os.environ, "RAY_ADDRESS": "", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs.pipeline", str(cfg)],
        cwd=ROOT,
        env=env,
        start_new_session=True,  # its own process group: the kill takes its local Ray too
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    markers = killed / "_work" / "clean"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if markers.is_dir() and len(list(markers.glob("*.json"))) >= 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the job ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    done = len(list(markers.glob("*.json")))
    assert 2 <= done < len(FILES)  # killed midway: some shards finished, not all
    assert not (killed / "_SUCCESS").exists()

    # the rerun (here on the tests' Ray) resumes; an undisturbed run is the reference
    load = load_config
    resumed = run_pipeline(load(str(cfg)))
    ref = run_pipeline(load(str(cfg), output=str(tmp_path / "ref")))
    man_k = json.loads((killed / "manifest.json").read_text())
    man_r = json.loads((tmp_path / "ref" / "manifest.json").read_text())
    assert man_k["files"] == man_r["files"]  # same names, rows, bytes, sha256
    for key in ("input_documents", "kept_documents", "removed_by_stage", "by_language"):
        assert resumed[key] == ref[key]
    ids = pl.read_parquet(killed / "data" / "*.parquet")["id"].to_list()
    assert len(ids) == len(set(ids)) == ref["kept_documents"]
