"""``jobs/pipeline.py`` as a Ray job: ``ray job submit`` against a ``ray start --head`` cluster.

The test starts its own head node (``ray start --head --block``, one CPU, dashboard on) in a
private temporary directory and process group, submits the pipeline with ``ray job submit
--working-dir <repo>`` (the repository is uploaded and unpacked by Ray; the config's relative
input paths resolve inside that copy), waits for ``SUCCEEDED`` and checks the report.

Isolation from the test session's own Ray (``tests/conftest.py``, ``ray.init(address="local")``)
and from any other Ray on the machine: free ports for everything that has a fixed default, a
dedicated ``--temp-dir`` (so ``address="auto"`` elsewhere never finds this cluster), and the
addresses passed only to the subprocesses. ``ray stop`` is *not* used: it kills every Ray
process of the user (it scans process names), including the session's cluster. The cluster is
stopped by signalling its process group, which holds exactly the processes ``ray start``
spawned.

``RAY_AUTH_MODE=disabled``: Ray >= 2.5x turns on token authentication for ``ray start`` when a
token file exists in the home directory (``~/.ray/auth_token``, left by an earlier local
``ray.init``), after which the dashboard answers 401 to a client that has no token. A private
cluster bound to 127.0.0.1 needs no authentication, and the test must not depend on (or read)
credentials in the home directory.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pyarrow.dataset as ds

ROOT = Path(__file__).resolve().parents[1]

#: uploaded with the working directory: none of these (caches, VCS, build metadata)
EXCLUDES = [
    ".git",
    ".hypothesis",
    ".pytest_cache",
    ".ruff_cache",
    ".venv",
    "*.egg-info",
    "__pycache__",
    "out",
    "results",
]


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _ray_cli() -> list[str]:
    exe = Path(sys.executable).with_name("ray")
    return [str(exe)] if exe.exists() else [shutil.which("ray") or "ray"]


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def _logs(tmp: Path) -> str:
    out = []
    for name in ("ray-start.out", "ray-start.err", "worker0.err", "worker1.err"):
        out.append(f"--- {name}\n{_tail(tmp / name)}")
    logs = sorted(tmp.glob("session_*/logs"))
    if logs:
        for name in ("dashboard.log", "dashboard.err", "raylet.err", "gcs_server.err"):
            out.append(f"--- {name}\n{_tail(logs[-1] / name, 1500)}")
    return "\n".join(out)


def _wait_http(url: str, proc: subprocess.Popen, tmp: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"ray start exited with {proc.returncode}\n{_logs(tmp)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"the dashboard did not answer at {url}\n{_logs(tmp)}")
        time.sleep(0.5)


def stop_group(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """SIGTERM to the process group of a ``ray start`` (only what it spawned), SIGKILL after
    ``grace`` seconds; returns when the whole group is gone. A ``ray start --block`` given
    SIGTERM drains its node for up to 30 s before it stops its processes, even when idle."""
    pgid = proc.pid  # start_new_session=True: the group id is the leader's pid
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 15.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader
            try:
                os.killpg(pgid, 0)  # anything left in the group?
            except ProcessLookupError:
                return
            time.sleep(0.1)


def assert_group_gone(proc: subprocess.Popen) -> None:
    """Nothing of the ``ray start`` process group of ``proc`` is still running."""
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return
    raise AssertionError("processes of the test cluster are still running")


def _worker_cmd(gcs: int, tmp: Path) -> list[str]:
    """``ray start`` of a worker node: its own ports for everything with a fixed default and
    its own temporary folder (two nodes of one machine must not share runtime-env files)."""
    agent, grpc, env_agent, metrics = _free_ports(4)
    tmp.mkdir(parents=True, exist_ok=True)
    return [
        *_ray_cli(),
        "start",
        "--block",
        f"--address=127.0.0.1:{gcs}",
        "--node-ip-address=127.0.0.1",
        "--num-cpus=1",
        "--object-store-memory=100000000",
        f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={grpc}",
        f"--runtime-env-agent-port={env_agent}",
        f"--metrics-export-port={metrics}",
        f"--temp-dir={tmp}",
        "--disable-usage-stats",
    ]


def _wait_job(address: str, submit_output: str, tmp: Path, timeout: float) -> str:
    """Wait for the job that ``ray job submit`` printed to succeed; returns its logs."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    m = re.search(r"(raysubmit_\w+)", submit_output)
    assert m, submit_output
    job_id = m.group(1)
    client = JobSubmissionClient(address)
    deadline = time.monotonic() + timeout
    status = client.get_job_status(job_id)
    while status not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        assert time.monotonic() < deadline, f"job still {status}\n{client.get_job_logs(job_id)}"
        time.sleep(0.5)
        status = client.get_job_status(job_id)
    logs = client.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, logs + _logs(tmp)
    return logs


def test_ray_job_submit_runs_the_pipeline(ray_session, monkeypatch):
    # a short path: Ray's Unix sockets live under the temp dir (108-byte path limit)
    tmp = Path(tempfile.mkdtemp(prefix="rj", dir="/tmp"))
    gcs, dash, client_port, agent = _free_ports(4)
    env = dict(os.environ)
    env.update({"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"})
    env.pop("RAY_ADDRESS", None)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # for the in-process job client
    cmd = [
        *_ray_cli(),
        "start",
        "--head",
        "--block",
        f"--port={gcs}",
        f"--dashboard-port={dash}",
        "--dashboard-host=127.0.0.1",
        "--include-dashboard=true",
        "--node-ip-address=127.0.0.1",
        f"--ray-client-server-port={client_port}",
        f"--dashboard-agent-listen-port={agent}",
        "--num-cpus=1",
        "--object-store-memory=150000000",
        f"--temp-dir={tmp}",
        "--disable-usage-stats",
    ]
    out = tmp / "out"
    config = tmp / "config.yaml"
    # relative inputs: resolved in the job's working directory (the uploaded repository)
    config.write_text(
        "inputs:\n  - data/sample/ko.jsonl.gz\n  - data/sample/en.jsonl.gz\n"
        f"output: {out}\nexecutor: {{dedup_partitions: 2}}\n"
    )
    address = f"http://127.0.0.1:{dash}"
    with open(tmp / "ray-start.out", "wb") as so, open(tmp / "ray-start.err", "wb") as se:
        proc = subprocess.Popen(cmd, env=env, stdout=so, stderr=se, start_new_session=True)
    try:
        _wait_http(f"{address}/api/version", proc, tmp, timeout=60)
        sub_env = dict(env, RAY_ADDRESS=address)
        submit = subprocess.run(
            [
                *_ray_cli(),
                "job",
                "submit",
                "--address",
                address,
                "--working-dir",
                str(ROOT),
                "--runtime-env-json",
                json.dumps({"excludes": EXCLUDES}),
                "--no-wait",
                "--",
                sys.executable,
                "-m",
                "jobs.pipeline",
                str(config),
            ],
            env=sub_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert submit.returncode == 0, submit.stdout + submit.stderr + _logs(tmp)
        logs = _wait_job(address, submit.stdout + submit.stderr, tmp, timeout=90)
        # the driver printed the report's headline, and the report accounts for everything
        assert '"accounted": true' in logs
        report = json.loads((out / "report.json").read_text())
        lines = sum(
            sum(1 for _ in gzip.open(ROOT / "data" / "sample" / f"{x}.jsonl.gz"))
            for x in ("ko", "en")
        )
        assert report["input_documents"] == lines
        assert report["input_documents"] == report["kept_documents"] + report["removed_documents"]
        assert report["accounted"] and report["kept_documents"] > 0
        assert ds.dataset(out / "data").count_rows() == report["kept_documents"]
        assert (out / "_SUCCESS").exists() and not (out / "_work").exists()
    finally:
        stop_group(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    # nothing of this cluster is left running, and the session's own Ray still works
    assert_group_gone(proc)
    assert ray_session.is_initialized()
    assert ray_session.get(ray_session.remote(lambda: 41 + 1).remote(), timeout=60) == 42
