"""Multi-node runs on one machine (issue 6): a head without CPUs and two one-CPU worker nodes
(``ray.cluster_utils.Cluster``, each node its own raylet and object store), run by
``tests/cluster_job.py`` in a subprocess so that the test session's own Ray is untouched.

A worker node is killed in the middle of a pipeline job (in its clean phase, and as its write
phase starts) and of a counting job: each completes
(Ray retries the lost tasks on the surviving node) with output identical to undisturbed runs;
inference across the nodes gives the same estimate as on the session's single-node Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("cluster")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "cluster_job.py"), str(work)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_three_nodes_and_the_kills_happened_mid_job(cluster_run):
    assert cluster_run["nodes_alive_at_start"] == 3
    for job in ("pipeline", "pipeline_write", "count"):
        assert cluster_run["kills"][job] == {"killed": True, "job_running": True}, job


def test_pipeline_survives_a_dead_node_with_identical_output(cluster_run):
    ref = cluster_run["manifest_ref"]
    assert ref["rows"] > 0
    for name in ("killed", "killed_write"):
        killed = cluster_run[f"manifest_{name}"]
        assert ref["files"] == killed["files"], name  # names, rows, bytes, sha256
        assert cluster_run["report_ref"] == cluster_run[f"report_{name}"], name


def test_counting_survives_a_dead_node_with_identical_counts(cluster_run):
    assert cluster_run["count_ref"]["words"] > 10_000
    assert cluster_run["count_killed"] == cluster_run["count_ref"]


def test_inference_across_nodes_equals_single_node(cluster_run, ray_session, tmp_path):
    import gzip

    from forensics.infer import infer_mixture
    from forensics.training import train_bpe

    texts = []
    for c, n in (("en", 40), ("ko", 20), ("de", 10)):
        with gzip.open(SAMPLE / f"{c}.jsonl.gz", "rt", encoding="utf-8") as fh:
            texts += [json.loads(line)["text"] for line in fh][:n]
    (tmp_path / "tok.json").write_text(train_bpe(texts, 800), "utf-8")
    res = infer_mixture(
        str(tmp_path / "tok.json"), {c: str(SAMPLE / f"{c}.jsonl.gz") for c in ("en", "ko", "de")}
    )
    multi = cluster_run["infer"]
    assert set(multi) == {"en", "ko", "de"} and abs(sum(multi.values()) - 1) < 1e-9
    for c, v in res.mixture_bytes.items():
        assert multi[c] == pytest.approx(v, abs=1e-6)
