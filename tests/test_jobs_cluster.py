"""The four Ray job entrypoints (issue 6) as a cluster runs them: ``--address``, outputs and
reports written to URLs, progress logged.

One ``ray start --head`` cluster for the module (its own temporary folder, process group and
free ports; two CPUs, no dashboard) runs ``python -m jobs.pipeline | jobs.bpe count |
jobs.infer | jobs.experiment CONFIG --address 127.0.0.1:PORT``, each in a subprocess whose
environment has no ``RAY_ADDRESS`` (the test session's must not leak into it): the job ran on
that cluster when the cluster's GCS lists a driver with the subprocess's pid and the job's
module in its entrypoint, and the job's log names the cluster's GCS port and node. Each writes
its outputs and report to a ``file://`` URL (its tasks write from Ray worker processes, where a
``memory://`` filesystem of the driver is not shared); what the driver writes itself (infer's
JSON and plot, the experiment's results, BPE training from a count table, and from shards,
whose counts come back to the driver) is also written to a ``memory://`` URL by ``main()`` in
this process, on the session's Ray. Every test also checks the job's progress lines.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import fsspec
import pyarrow.parquet as pq
import pytest
from test_bpe_cli import _shards
from test_pipeline_raysubmit import _free_ports, _ray_cli, _tail, assert_group_gone, stop_group

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
PNG = b"\x89PNG\r\n\x1a\n"


@dataclass
class Cluster:
    port: int  # the GCS port
    nodes: list[str]  # node ids (hex)
    env: dict[str, str]  # for the job subprocesses: no RAY_ADDRESS
    tmp: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def drivers(self) -> list[tuple[int, str]]:
        """``(driver pid, entrypoint)`` of every job the cluster's GCS has seen."""
        from ray._raylet import GcsClient

        jobs = GcsClient(address=self.address).get_all_job_info(timeout=10)
        return [(int(j.driver_pid), str(j.entrypoint)) for j in jobs.values()]


def _logs(tmp: Path) -> str:
    out = [f"--- {n}\n{_tail(tmp / n)}" for n in ("head.out", "head.err")]
    for logs in sorted(tmp.glob("session_*/logs"))[-1:]:
        for name in ("raylet.err", "gcs_server.err"):
            out.append(f"--- {name}\n{_tail(logs / name, 1500)}")
    return "\n".join(out)


@pytest.fixture(scope="module")
def cluster():
    from ray._raylet import GcsClient

    # a short path: Ray's Unix sockets live under the temp dir (108-byte path limit)
    tmp = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
    gcs, client, agent, grpc, env_agent, metrics = _free_ports(6)
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    head = [
        *_ray_cli(), "start", "--head", "--block", f"--port={gcs}", "--include-dashboard=false",
        "--node-ip-address=127.0.0.1", f"--ray-client-server-port={client}",
        f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={grpc}",
        f"--runtime-env-agent-port={env_agent}", f"--metrics-export-port={metrics}",
        "--num-cpus=2", "--object-store-memory=100000000", f"--temp-dir={tmp}",
        "--disable-usage-stats",
    ]  # fmt: skip
    with open(tmp / "head.out", "wb") as so, open(tmp / "head.err", "wb") as se:
        proc = subprocess.Popen(head, env=env, stdout=so, stderr=se, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        nodes: list[str] = []
        while not nodes:
            assert proc.poll() is None, f"ray start exited with {proc.returncode}\n{_logs(tmp)}"
            assert time.monotonic() < deadline, f"the head did not come up\n{_logs(tmp)}"
            try:
                info = GcsClient(address=f"127.0.0.1:{gcs}").get_all_node_info(timeout=2)
                nodes = [k.hex() for k, v in info.items() if v.state == 0]  # ALIVE
            except Exception:  # not listening yet
                pass
            if not nodes:
                time.sleep(0.5)
        yield Cluster(gcs, nodes, env, tmp)
    finally:
        stop_group(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    assert_group_gone(proc)


def _run_job(cluster: Cluster, module: str, *args: str) -> tuple[str, str]:
    """``python -m MODULE ARGS --address CLUSTER`` in a subprocess; asserts it succeeded and
    ran on ``cluster`` (not on a Ray of its own); returns its stdout and stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args, "--address", cluster.address],
        cwd=ROOT,
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, f"{module} exited {proc.returncode}\n{out[-3000:]}\n{err[-5000:]}"
    # the cluster's GCS had this process as a driver of this job ...
    drivers = cluster.drivers()
    assert any(pid == proc.pid and module in entry for pid, entry in drivers), drivers
    # ... and the job logged that cluster: its GCS port, its one node (the driver's view)
    m = re.search(r"Ray: cluster at (\S+), (\d+) node\(s\) \((\w+)\)", err)
    assert m, err[-3000:]
    assert m.group(1).endswith(f":{cluster.port}") and m.group(2) == "1", m.group(0)
    assert cluster.nodes[0].startswith(m.group(3)), (m.group(0), cluster.nodes)
    assert "starting Ray (local cluster)" not in err
    return out, err


def _read(url: str, mode: str = "rb"):
    with fsspec.open(url, mode) as fh:
        return fh.read()


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory) -> Path:
    """A byte-level BPE of 800 tokens trained on a few sample documents (0.2 s)."""
    from forensics.training import train_bpe

    texts = []
    for c, n in (("en", 40), ("ko", 20), ("de", 10)):
        with gzip.open(SAMPLE / f"{c}.jsonl.gz", "rt", encoding="utf-8") as fh:
            texts += [json.loads(line)["text"] for line in fh][:n]
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    path.write_text(train_bpe(texts, 800), "utf-8")
    return path


def _infer_config(tokenizer: Path, json_url: str, plot_url: str) -> str:
    cats = "".join(f"  {c}: {SAMPLE / (c + '.jsonl.gz')}\n" for c in ("en", "ko", "de"))
    return (
        f"tokenizer: {tokenizer}\ncategories:\n{cats}sample_bytes: 30000\nmerges: 300\n"
        f"json: {json_url}\nplot: {plot_url}\n"
    )


def _experiment_config(tmp: Path, out_url: str) -> str:
    cats = tmp / "cats.yaml"
    cats.write_text("".join(f"{c}: {SAMPLE / (c + '.jsonl.gz')}\n" for c in ("en", "ko", "ja")))
    return (
        f"categories: {cats}\nout: {out_url}\nsetting: languages\nn: 2\ntrials: 1\n"
        "vocab_size: 600\nbytes_per_category: 40000\nbaselines: false\nmerges: null\n"
    )


# ------------------------------------------------------------------------------------------
# on the cluster (--address), outputs to file:// URLs
# ------------------------------------------------------------------------------------------
def test_pipeline_job_on_the_cluster_writes_to_a_file_url(cluster, tmp_path):
    out = f"file://{tmp_path / 'clean'}"
    inputs = "".join(f"  - {SAMPLE / c}.jsonl.gz\n" for c in ("ko", "en"))
    config = tmp_path / "pipeline.yaml"
    config.write_text(f"inputs:\n{inputs}output: {out}\nexecutor: {{dedup_partitions: 2}}\n")
    stdout, _ = _run_job(cluster, "jobs.pipeline", f"file://{config}")  # the config a URL too
    lines = stdout.strip().splitlines()
    assert "clean: 2 shard(s), 0 already done" in lines and lines[-2].startswith("done: kept")
    head = json.loads(lines[-1])
    report = json.loads(_read(f"{out}/report.json"))
    assert head["kept_documents"] == report["kept_documents"] > 0 and report["accounted"]
    manifest = json.loads(_read(f"{out}/manifest.json"))
    assert manifest["rows"] == report["kept_documents"]
    rows = sum(pq.read_metadata(tmp_path / "clean" / f["path"]).num_rows for f in manifest["files"])
    assert rows == report["kept_documents"]
    assert _read(f"{out}/funnel.png")[:8] == PNG
    assert fsspec.filesystem("file").exists(str(tmp_path / "clean" / "_SUCCESS"))


def test_bpe_count_job_on_the_cluster_logs_each_shard_and_writes_to_a_file_url(cluster, tmp_path):
    from pipeline.bpe.count import CountTable, count_shards

    shards = _shards(tmp_path / "shards")
    out = f"file://{tmp_path / 'bpe'}"
    config = tmp_path / "count.yaml"
    config.write_text(f"shards: {shards}\nout: {out}\npretokenizer: gpt2\nmix: {{ko: 1, en: 1}}\n")
    stdout, stderr = _run_job(cluster, "jobs.bpe", "count", str(config))
    for k in (1, 2, 3, 4):  # every shard counted and logged, the table's output too
        assert re.search(rf"^counted shard {k}/4 \([\d.]+ MB of text, \d+ documents", stderr, re.M)
    assert f"wrote the count table to {out}/counts" in stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    meta = json.loads(_read(f"{out}/counts/counts.json"))
    assert meta["words"] == summary["words"] > 1000 and set(meta["true_mixture"]) == {"ko", "en"}
    # the table read back from the URL: the same counts as counting in this process
    table = CountTable.read(f"{out}/counts")
    ref = count_shards(str(shards), "gpt2", mix={"ko": 1, "en": 1}, use_ray=False)
    got, want = table.words_and_counts(), ref.words_and_counts()
    assert sorted(zip(got[0], got[1].tolist(), strict=True)) == sorted(
        zip(want[0], want[1].tolist(), strict=True)
    )


def test_infer_job_on_the_cluster_writes_to_file_urls(cluster, tiny_tokenizer, tmp_path):
    js, png = f"file://{tmp_path / 'res' / 'r.json'}", f"file://{tmp_path / 'res' / 'r.png'}"
    config = tmp_path / "infer.yaml"
    config.write_text(_infer_config(tiny_tokenizer, js, png))
    _, stderr = _run_job(cluster, "jobs.infer", str(config))
    assert re.search(r"counted (en|ko|de) shard 0 \(\d+ bytes, [\d.]+s\): \d/3 shards", stderr)
    assert "LP round" in stderr and f"wrote {js}" in stderr and f"wrote {png}" in stderr
    data = json.loads(_read(js))
    assert set(data["mixture"]) == {"en", "ko", "de"} and data["diagnostics"]["T"] == 300
    assert abs(sum(data["mixture"].values()) - 1) < 1e-9
    assert _read(png)[:8] == PNG


def test_experiment_job_on_the_cluster_writes_to_a_file_url(cluster, tmp_path):
    out = f"file://{tmp_path / 'exp'}"
    config = tmp_path / "exp.yaml"
    config.write_text(_experiment_config(tmp_path, out))
    stdout, stderr = _run_job(cluster, "jobs.experiment", str(config))
    assert "running 1 trial(s) of 2 categories each from 3" in stderr
    assert re.search(r"^trial 0 done: log10 MSE \{'attack'", stderr, re.M)
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["trials"] == 1 and summary["outputs"]["summary"] == f"{out}/summary.json"
    assert json.loads(_read(f"{out}/summary.json"))
    assert pq.read_table(tmp_path / "exp" / "trials.parquet").num_rows >= 1
    assert _read(f"{out}/log10_mse.png")[:8] == PNG


# ------------------------------------------------------------------------------------------
# in this process: what the driver writes, to memory:// URLs; progress in the log
# ------------------------------------------------------------------------------------------
@pytest.fixture
def memory_root():
    """A fresh folder of this process's ``memory://`` filesystem (removed afterwards)."""
    fs = fsspec.filesystem("memory")
    root = f"/jobs-{os.getpid()}-{time.monotonic_ns()}"
    yield f"memory://{root}"
    if fs.exists(root):
        fs.rm(root, recursive=True)


def test_bpe_train_job_from_counts_writes_to_a_memory_url(tmp_path, memory_root, caplog):
    from jobs.bpe import main
    from pipeline.bpe.count import count_shards

    caplog.set_level(logging.INFO)
    shards = _shards(tmp_path / "shards", cats=("en", "ko"), per_cat=20)
    count_shards(str(shards), "gpt2", use_ray=False).write(f"{memory_root}/counts")
    config = f"{memory_root}/train.yaml"  # the config from a URL too
    with fsspec.open(config, "w") as fh:
        fh.write(f"counts: {memory_root}/counts\nout: {memory_root}/tok\nvocab_size: 700\n")
    assert main(["train", config]) == 0  # no Ray: training from counts runs in this process
    log = caplog.text
    assert "training a byte-level BPE of 700 tokens" in log and "trained 444 merges" in log
    assert f"wrote {memory_root}/tok/tokenizer.json, {memory_root}/tok/train_report.json" in log
    tok = json.loads(_read(f"{memory_root}/tok/tokenizer.json"))
    assert len(tok["model"]["merges"]) == 700 - 256
    report = json.loads(_read(f"{memory_root}/tok/train_report.json"))
    assert report["training"]["merges"] == 444 and report["counting"]["shards"] == 2


def test_bpe_train_job_from_shards_logs_each_stage_and_writes_to_a_memory_url(
    ray_session, tmp_path, memory_root, caplog
):
    """Counting on Ray returns the tables to the driver, which writes every output itself."""
    from jobs.bpe import main

    caplog.set_level(logging.INFO)
    shards = _shards(tmp_path / "shards", cats=("en", "ko", "de"), per_cat=20)
    config = tmp_path / "train.yaml"
    config.write_text(f"shards: {shards}\nout: {memory_root}/tok\nvocab_size: 700\n")
    assert main(["train", str(config)]) == 0
    log = caplog.text
    for k in (1, 2, 3):
        assert f"counted shard {k}/3 (" in log
    assert "training a byte-level BPE of 700 tokens" in log and "trained 444 merges" in log
    assert f"wrote the count table to {memory_root}/tok/counts" in log
    assert f"wrote {memory_root}/tok/tokenizer.json, {memory_root}/tok/train_report.json" in log
    assert len(json.loads(_read(f"{memory_root}/tok/tokenizer.json"))["model"]["merges"]) == 444
    report = json.loads(_read(f"{memory_root}/tok/train_report.json"))
    meta = json.loads(_read(f"{memory_root}/tok/counts/counts.json"))
    assert report["counting"]["shards"] == meta["shards"] == 3
    assert report["training"]["words"] == meta["words"]


def test_infer_job_writes_to_memory_urls(ray_session, tiny_tokenizer, memory_root, caplog):
    from jobs.infer import main

    caplog.set_level(logging.INFO)
    js, png = f"{memory_root}/res/r.json", f"{memory_root}/res/r.png"
    config = f"{memory_root}/infer.yaml"
    with fsspec.open(config, "w") as fh:
        fh.write(_infer_config(tiny_tokenizer, js, png))
    assert main([config]) == 0
    assert re.search(r"counted (en|ko|de) shard 0 .*: \d/3 shards", caplog.text)
    assert f"wrote {js}" in caplog.text and f"wrote {png}" in caplog.text
    data = json.loads(_read(js))
    assert set(data["mixture"]) == {"en", "ko", "de"}
    assert abs(sum(data["mixture"].values()) - 1) < 1e-9
    assert _read(png)[:8] == PNG


def test_experiment_job_writes_to_a_memory_url(ray_session, tmp_path, memory_root, caplog):
    from jobs.experiment import main

    caplog.set_level(logging.INFO)
    out = f"{memory_root}/exp"
    config = tmp_path / "exp.yaml"
    config.write_text(_experiment_config(tmp_path, out))
    assert main([str(config)]) == 0
    assert re.search(r"trial 0 done: log10 MSE", caplog.text)
    assert f"wrote {out}/trials.parquet" in caplog.text
    fs = fsspec.filesystem("memory")
    root = out.removeprefix("memory://")
    assert sorted(fs.ls(root, detail=False)) == sorted(
        f"{root}/{n}"
        for n in (
            "trials.parquet",
            "trials.json",
            "summary.json",
            "log10_mse.png",
            "true_vs_estimated.png",
        )
    )
    with fs.open(f"{root}/trials.parquet", "rb") as fh:
        assert pq.read_table(fh).num_rows >= 1
    assert json.loads(_read(f"{out}/summary.json"))
    assert json.loads(_read(f"{out}/trials.json"))[0]["trial"] == 0
