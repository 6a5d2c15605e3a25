"""``ray job submit`` against a multi-node ``ray start`` cluster on this machine (issue 6):
a head node without CPUs and two one-CPU worker nodes, each ``ray start`` in its own process
group; the pipeline job and the ``mixtrace infer`` job (``jobs.infer``) run their tasks on the
worker nodes and their results are read back. One cluster for the module.

The project is not uploaded (``--working-dir``, tested on one node in
``test_pipeline_raysubmit.py``): the job finds it on ``PYTHONPATH``, as in the cluster image
where it is installed (``infra/Dockerfile``), and its config names absolute paths.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_pipeline_raysubmit import (
    _free_ports,
    _logs,
    _ray_cli,
    _wait_http,
    _wait_job,
    _worker_cmd,
    assert_group_gone,
    stop_group,
)

ROOT = Path(__file__).resolve().parents[1]


def _alive(address: str) -> int:
    with urllib.request.urlopen(f"{address}/nodes?view=summary", timeout=5) as r:
        summary = json.loads(r.read())["data"]["summary"]
    return sum(n.get("raylet", {}).get("state") == "ALIVE" for n in summary)


@dataclass
class ThreeNodes:
    address: str  # the dashboard (job submission) address
    env: dict[str, str]  # for ray CLI subprocesses: no RAY_ADDRESS of the test session
    tmp: Path


@pytest.fixture(scope="module")
def three_nodes(ray_session):
    """A head without CPUs and two one-CPU worker nodes (``ray start`` each); after the
    module, nothing of it is left running and the session's own Ray still works."""
    tmp = Path(tempfile.mkdtemp(prefix="rm", dir="/tmp"))
    gcs, dash, client_port, agent = _free_ports(4)
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    head = [
        *_ray_cli(), "start", "--head", "--block", f"--port={gcs}", f"--dashboard-port={dash}",
        "--dashboard-host=127.0.0.1", "--include-dashboard=true", "--node-ip-address=127.0.0.1",
        f"--ray-client-server-port={client_port}", f"--dashboard-agent-listen-port={agent}",
        "--num-cpus=0", "--object-store-memory=100000000", f"--temp-dir={tmp}",
        "--disable-usage-stats",
    ]  # fmt: skip
    address = f"http://127.0.0.1:{dash}"
    procs: list[subprocess.Popen] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "disabled")  # for the in-process job client
        try:
            with open(tmp / "ray-start.out", "wb") as so, open(tmp / "ray-start.err", "wb") as se:
                procs.append(
                    subprocess.Popen(head, env=env, stdout=so, stderr=se, start_new_session=True)
                )
            _wait_http(f"{address}/api/version", procs[0], tmp, timeout=90)
            wenv = dict(env, RAY_raylet_start_wait_time_s="120")
            for k in range(2):  # one after the other: a loaded 2-core machine starts raylets slowly
                with (
                    open(tmp / f"worker{k}.out", "wb") as so,
                    open(tmp / f"worker{k}.err", "wb") as se,
                ):
                    procs.append(
                        subprocess.Popen(
                            _worker_cmd(gcs, tmp / f"w{k}"),
                            env=wenv,
                            stdout=so,
                            stderr=se,
                            start_new_session=True,
                        )
                    )
                deadline = time.monotonic() + 150
                while _alive(address) < 2 + k:
                    assert procs[-1].poll() is None, f"worker node {k} exited\n{_logs(tmp)}"
                    assert time.monotonic() < deadline, _logs(tmp)
                    time.sleep(0.5)
            yield ThreeNodes(address, env, tmp)
        finally:
            for p in reversed(procs):
                stop_group(p)
            shutil.rmtree(tmp, ignore_errors=True)
    for p in procs:
        assert_group_gone(p)
    assert ray_session.get(ray_session.remote(lambda: 42).remote(), timeout=60) == 42


def _submit(cluster: ThreeNodes, *entrypoint: str) -> str:
    """``ray job submit`` of ``entrypoint`` (the project on PYTHONPATH); the job's logs once
    it succeeded."""
    runtime_env = {"env_vars": {"PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}}
    submit = subprocess.run(
        [
            *_ray_cli(), "job", "submit", "--address", cluster.address, "--runtime-env-json",
            json.dumps(runtime_env), "--no-wait", "--", *entrypoint,
        ],
        env=dict(cluster.env, RAY_ADDRESS=cluster.address, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=90,
    )  # fmt: skip
    assert submit.returncode == 0, submit.stdout + submit.stderr + _logs(cluster.tmp)
    return _wait_job(cluster.address, submit.stdout + submit.stderr, cluster.tmp, timeout=180)


def test_ray_job_submit_on_three_nodes(three_nodes):
    out = three_nodes.tmp / "out"
    config = three_nodes.tmp / "config.yaml"
    inputs = "".join(f"  - {ROOT / 'data' / 'sample' / c}.jsonl.gz\n" for c in ("ko", "en", "de"))
    config.write_text(f"inputs:\n{inputs}output: {out}\nexecutor: {{dedup_partitions: 2}}\n")
    logs = _submit(three_nodes, sys.executable, "-m", "jobs.pipeline", str(config))
    assert _alive(three_nodes.address) == 3
    head_line = json.loads(logs.strip().splitlines()[-1])  # the driver's one-line summary
    report = json.loads((out / "report.json").read_text())
    assert head_line["kept_documents"] == report["kept_documents"] > 0
    assert report["accounted"] and report["input_documents"] > report["kept_documents"]


def test_ray_job_submit_infer_on_three_nodes_equals_in_process(three_nodes, ray_session):
    """``mixtrace infer`` as a job (``jobs.infer``): its counting tasks on the worker nodes;
    the JSON it writes holds the estimate that the same config gives in this process, on the
    session's single-node Ray."""
    from forensics.training import train_bpe
    from jobs.infer import load_config, run

    sample = ROOT / "data" / "sample"
    texts = []
    for c, n in (("en", 40), ("ko", 20), ("de", 10)):
        with gzip.open(sample / f"{c}.jsonl.gz", "rt", encoding="utf-8") as fh:
            texts += [json.loads(line)["text"] for line in fh][:n]
    tok = three_nodes.tmp / "tok.json"
    tok.write_text(train_bpe(texts, 800), "utf-8")  # 0.2 s
    result = three_nodes.tmp / "infer" / "result.json"
    cats = "".join(f"  {c}: {sample / c}.jsonl.gz\n" for c in ("en", "ko", "de"))
    config = three_nodes.tmp / "infer.yaml"
    config.write_text(f"tokenizer: {tok}\ncategories:\n{cats}json: {result}\n")
    logs = _submit(three_nodes, sys.executable, "-m", "jobs.infer", str(config))
    assert "LP: objective" in logs and f"wrote {result}" in logs
    assert _alive(three_nodes.address) == 3
    multi = json.loads(result.read_text())
    cfg = load_config(str(config))
    del cfg["json"]
    local = run(cfg)  # the same inference here, without the cluster
    assert set(multi["mixture"]) == {"en", "ko", "de"}
    assert multi["diagnostics"]["T"] == local.diagnostics.T
    for c, v in local.mixture_bytes.items():
        assert multi["mixture"][c] == pytest.approx(v, abs=1e-6), c
    assert multi["categories"]["ko"]["bytes"] == local.stats["ko"].bytes
