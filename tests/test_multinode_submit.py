"""``ray job submit`` against a multi-node ``ray start`` cluster on this machine (issue 6):
a head node without CPUs and two one-CPU worker nodes, each ``ray start`` in its own process
group; the pipeline job runs on the worker nodes and its result is read back.

The project is not uploaded (``--working-dir``, tested on one node in
``test_pipeline_raysubmit.py``): the job finds it on ``PYTHONPATH``, as in the cluster image
where it is installed (``infra/Dockerfile``), and its config names absolute paths.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from test_pipeline_raysubmit import (
    _free_ports,
    _logs,
    _ray_cli,
    _stop_group,
    _wait_http,
    _wait_job,
    _worker_cmd,
)

ROOT = Path(__file__).resolve().parents[1]


def _alive(address: str) -> int:
    with urllib.request.urlopen(f"{address}/nodes?view=summary", timeout=5) as r:
        summary = json.loads(r.read())["data"]["summary"]
    return sum(n.get("raylet", {}).get("state") == "ALIVE" for n in summary)


def test_ray_job_submit_on_three_nodes(ray_session, monkeypatch):
    tmp = Path(tempfile.mkdtemp(prefix="rm", dir="/tmp"))
    gcs, dash, client_port, agent = _free_ports(4)
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    head = [
        *_ray_cli(), "start", "--head", "--block", f"--port={gcs}", f"--dashboard-port={dash}",
        "--dashboard-host=127.0.0.1", "--include-dashboard=true", "--node-ip-address=127.0.0.1",
        f"--ray-client-server-port={client_port}", f"--dashboard-agent-listen-port={agent}",
        "--num-cpus=0", "--object-store-memory=100000000", f"--temp-dir={tmp}",
        "--disable-usage-stats",
    ]  # fmt: skip
    address = f"http://127.0.0.1:{dash}"
    out = tmp / "out"
    config = tmp / "config.yaml"
    inputs = "".join(f"  - {ROOT / 'data' / 'sample' / c}.jsonl.gz\n" for c in ("ko", "en", "de"))
    config.write_text(f"inputs:\n{inputs}output: {out}\nexecutor: {{dedup_partitions: 2}}\n")
    procs: list[subprocess.Popen] = []
    try:
        with open(tmp / "ray-start.out", "wb") as so, open(tmp / "ray-start.err", "wb") as se:
            procs.append(
                subprocess.Popen(head, env=env, stdout=so, stderr=se, start_new_session=True)
            )
        _wait_http(f"{address}/api/version", procs[0], tmp, timeout=90)
        wenv = dict(env, RAY_raylet_start_wait_time_s="120")
        for k in range(2):  # one after the other: a loaded 2-core machine starts raylets slowly
            with open(tmp / f"worker{k}.out", "wb") as so, open(tmp / f"worker{k}.err", "wb") as se:
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
        runtime_env = {"env_vars": {"PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}}
        submit = subprocess.run(
            [
                *_ray_cli(), "job", "submit", "--address", address, "--runtime-env-json",
                json.dumps(runtime_env), "--no-wait", "--",
                sys.executable, "-m", "jobs.pipeline", str(config),
            ],
            env=dict(env, RAY_ADDRESS=address, PYTHONPATH=str(ROOT)),
            capture_output=True,
            text=True,
            timeout=90,
        )  # fmt: skip
        assert submit.returncode == 0, submit.stdout + submit.stderr + _logs(tmp)
        logs = _wait_job(address, submit.stdout + submit.stderr, tmp, timeout=180)
        assert _alive(address) == 3
        head_line = json.loads(logs.strip().splitlines()[-1])  # the driver's one-line summary
        report = json.loads((out / "report.json").read_text())
        assert head_line["kept_documents"] == report["kept_documents"] > 0
        assert report["accounted"] and report["input_documents"] > report["kept_documents"]
    finally:
        for p in reversed(procs):
            _stop_group(p)
        shutil.rmtree(tmp, ignore_errors=True)
    for p in procs:
        try:
            os.killpg(p.pid, 0)
            raise AssertionError("processes of the test cluster are still running")
        except ProcessLookupError:
            pass
    assert ray_session.get(ray_session.remote(lambda: 42).remote(), timeout=60) == 42
