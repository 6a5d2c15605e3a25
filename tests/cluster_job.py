"""A multi-node Ray cluster on one machine, driven by tests/test_multinode.py (run as a script).

    python tests/cluster_job.py WORKDIR

Starts ``ray.cluster_utils.Cluster``: a head node with no CPUs (so every task runs on a worker
node) and two worker nodes of one CPU each, each its own raylet and object store. Then, on
that cluster:

1. the corpus pipeline on eight sample files, undisturbed;
2. the same pipeline into another folder, with one worker node removed (its raylet and
   workers killed) as soon as two shards are done; a fresh worker node joins afterwards, as an
   autoscaler would replace it; and again into a third folder, the node killed when the
   dedup phase has finished and the write tasks start (a phase whose tasks read the dedup
   tables and write the final files);
3. BPE pretoken counting of 16 shards (~12 MB), undisturbed, then again with a worker node killed
   as soon as count tasks run on both worker nodes (a fixed delay missed fast runs);
4. ``infer_mixture`` of a small tokenizer over three categories.

Prints one JSON line with what the test compares: the manifests, the count tables (as
word -> count maps hashed), the node kills' timing (the job was still running) and the nodes
the cluster had.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SAMPLE = ROOT / "data" / "sample"


def _kill_later(cluster, node, when, done: threading.Event, log: dict, key: str):
    """Kill ``node`` when ``when()`` is true; record whether the job was still running."""

    def run():
        while not when():
            if done.is_set():
                log[key] = {"killed": False, "job_running": False}
                return
            time.sleep(0.01)
        running = not done.is_set()
        cluster.remove_node(node, allow_graceful=False)
        log[key] = {"killed": True, "job_running": running}

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _table_digest(table) -> dict:
    words, counts = table.words_and_counts()
    pairs = sorted(zip(words, counts.tolist(), strict=True))
    h = hashlib.sha256(json.dumps(pairs, ensure_ascii=False).encode()).hexdigest()
    return {"words": len(pairs), "total": int(sum(c for _, c in pairs)), "sha256": h}


def main() -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray
    from ray.cluster_utils import Cluster

    work = Path(sys.argv[1])
    os.environ.pop("RAY_ADDRESS", None)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "object_store_memory": 100 * 2**20},
    )
    workers = [cluster.add_node(num_cpus=1, object_store_memory=100 * 2**20) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    out: dict = {"nodes_alive_at_start": sum(n["Alive"] for n in ray.nodes())}

    from pipeline.config import load_config
    from pipeline.executor import run_pipeline

    files = [
        str(SAMPLE / f"{c}.jsonl.gz") for c in ("ko", "en", "de", "ja", "fr", "es", "ru", "zh")
    ]

    def cfg(folder: Path):
        return load_config(
            inputs=files,
            output=str(folder),
            executor={"batch_size": 16, "dedup_partitions": 2},
            writer={"row_group_bytes": 20000, "file_bytes": 60000},
        )

    t = time.perf_counter()
    run_pipeline(cfg(work / "ref"))
    out["pipeline_seconds"] = time.perf_counter() - t

    # 2. a worker node dies after two shards; the job retries on the survivor
    markers = work / "killed" / "_work" / "clean"
    done = threading.Event()
    log: dict = {}
    killer = _kill_later(
        cluster,
        workers[0],
        lambda: markers.is_dir() and len(list(markers.glob("*.json"))) >= 2,
        done,
        log,
        "pipeline",
    )
    try:
        run_pipeline(cfg(work / "killed"))
    finally:
        done.set()
        killer.join()
    workers[0] = cluster.add_node(num_cpus=1, object_store_memory=100 * 2**20)  # replaced
    cluster.wait_for_nodes()
    # 2b. a worker node dies as the write phase starts
    dedup_done = work / "killed_write" / "_work" / "dedup.json"
    done = threading.Event()
    killer = _kill_later(cluster, workers[1], dedup_done.is_file, done, log, "pipeline_write")
    try:
        run_pipeline(cfg(work / "killed_write"))
    finally:
        done.set()
        killer.join()
    workers[1] = cluster.add_node(num_cpus=1, object_store_memory=100 * 2**20)
    cluster.wait_for_nodes()
    for name in ("ref", "killed", "killed_write"):
        out[f"manifest_{name}"] = json.loads((work / name / "manifest.json").read_text())
        out[f"report_{name}"] = {
            k: json.loads((work / name / "report.json").read_text())[k]
            for k in ("input_documents", "kept_documents", "removed_by_stage")
        }

    # 3. counting, undisturbed and with a node killed mid-job
    from pipeline.bpe.count import count_shards

    shards = work / "shards"
    shards.mkdir()
    import gzip

    rows = []
    for c in ("ko", "en", "de", "ja", "ru", "zh", "fr", "es"):
        with gzip.open(SAMPLE / f"{c}.jsonl.gz", "rt", encoding="utf-8") as fh:
            docs = [json.loads(line) for line in fh]
        for copy in range(3):  # ~12 MB: long enough to kill a node in the middle
            rows += [{**d, "id": f"{d['id']}#{copy}", "lang": c} for d in docs]
    for k in range(16):
        pq.write_table(pa.Table.from_pylist(rows[k::16]), shards / f"part-{k:05d}.parquet")
    ref = count_shards(str(shards), "gpt2", partitions=2)
    out["count_ref"] = _table_digest(ref)
    done = threading.Event()

    def both_busy() -> bool:  # count tasks run on both worker nodes (the head has no CPU)
        return ray.available_resources().get("CPU", 0) == 0

    killer = _kill_later(cluster, workers[1], both_busy, done, log, "count")
    try:
        again = count_shards(str(shards), "gpt2", partitions=2)
    finally:
        done.set()
        killer.join()
    out["count_killed"] = _table_digest(again)
    workers[1] = cluster.add_node(num_cpus=1, object_store_memory=100 * 2**20)
    cluster.wait_for_nodes()

    # 4. inference across the nodes
    from forensics.infer import infer_mixture
    from forensics.training import train_bpe

    texts = []
    for c, n in (("en", 40), ("ko", 20), ("de", 10)):
        with gzip.open(SAMPLE / f"{c}.jsonl.gz", "rt", encoding="utf-8") as fh:
            docs = [json.loads(line)["text"] for line in fh]
        texts += docs[:n]
    (work / "tok.json").write_text(train_bpe(texts, 800), "utf-8")
    res = infer_mixture(
        str(work / "tok.json"), {c: str(SAMPLE / f"{c}.jsonl.gz") for c in ("en", "ko", "de")}
    )
    out["infer"] = res.mixture_bytes
    out["kills"] = log
    out["nodes_alive_at_end"] = sum(n["Alive"] for n in ray.nodes())
    ray.shutdown()
    cluster.shutdown()
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
