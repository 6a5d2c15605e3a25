"""Time and cost of the corpus pipeline on 1 TB and 10 TB of Korean text, projected from the
figures measured on this machine (issue 6, "Show it").

    python bench/bench_pipeline.py --e2e-repeat 16 --save docs/scaling/e2e.json
    python bench/bench_cluster.py --mb 16 --save docs/scaling/cluster.json
    python bench/projection.py [--e2e docs/scaling/e2e.json] [--cluster docs/scaling/cluster.json]

The model, stated so that it can be argued with:

* compute: input bytes / (measured end-to-end MB/s per core x cores x measured scaling
  efficiency). The rate is the whole pipeline's (read, clean, dedup, write) on a local Ray, so it
  already pays for the exchange through a local disk;
* exchange: what the phases hand to each other through the output folder, measured per document
  (the clean task's staging Parquet, read back by the write task; the dedup keys, edges and
  cluster tables). On a cluster it crosses the network to shared storage once written and once
  read, so each byte counts twice, beside reading the input once and writing the output
  (charged as the whole exchange again: more than the staging size it cannot exceed). It is charged at ``--node-gbit`` per node (nodes of ``--cores-per-node``,
  as in ``infra/raycluster.yaml``), capped by ``--storage-gbs`` (the aggregate throughput of
  a shared filesystem; none for object storage), not overlapped with compute: a pessimistic
  sum;
* cost: cores x hours x ``--price`` per vCPU-hour (on-demand general-purpose VMs; spot prices are
  about a third).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA_JUICER = "Data-Juicer (Chen et al., 2024): 1 TB in 50.8 min on 640 cores"


def project(
    e2e: dict,
    efficiency: float,
    tb: float,
    cores: int,
    node_gbit: float,
    cores_per_node: int,
    storage_gbs: float = 0.0,
) -> dict[str, float]:
    total = tb * 1e12
    ex = e2e["exchange"]
    compute = total / (e2e["mb_per_s_per_core"] * 1e6 * cores * efficiency)
    exchange = total * (ex["staging_bytes"] + ex["dedup_key_bytes"]) / ex["input_bytes"]
    docs = total / (ex["input_bytes"] / ex["input_documents"])
    traffic = total + 2 * exchange + exchange  # input, exchange written and read, output
    nodes = max(1, cores // cores_per_node)
    bandwidth = nodes * node_gbit / 8 * 1e9
    if storage_gbs > 0:
        bandwidth = min(bandwidth, storage_gbs * 1e9)
    io = traffic / bandwidth
    return {"compute_s": compute, "io_s": io, "exchange_bytes": exchange, "docs": docs}


def fmt_time(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 3 * 3600 else f"{seconds / 3600:.1f} h"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--e2e", default=str(ROOT / "docs" / "scaling" / "e2e.json"))
    ap.add_argument("--cluster", default=str(ROOT / "docs" / "scaling" / "cluster.json"))
    ap.add_argument("--price", type=float, default=0.048, help="USD per vCPU-hour")
    ap.add_argument("--node-gbit", type=float, default=10.0, help="network per node, Gbit/s")
    ap.add_argument("--cores-per-node", type=int, default=8)
    ap.add_argument(
        "--storage-gbs", type=float, default=0.0, help="cap on shared storage, GB/s (0: none)"
    )
    args = ap.parse_args()
    e2e = json.loads(Path(args.e2e).read_text("utf-8"))
    cluster = json.loads(Path(args.cluster).read_text("utf-8"))
    eff = cluster["efficiency"]
    ex = e2e["exchange"]
    per_doc = ex["input_bytes"] / ex["input_documents"]
    exch = (ex["staging_bytes"] + ex["dedup_key_bytes"]) / ex["input_documents"]
    print(
        f"measured: {e2e['mb_per_s_per_core']:.2f} MB/s per core end to end ({e2e['corpus']}, "
        f"{e2e['input_bytes'] / 1e6:.1f} MB, {e2e['cpus']} CPUs); scaling efficiency "
        f"{eff:.0%} ({cluster['workers']} worker nodes vs 1, {cluster['input_bytes'] / 1e6:.1f}"
        f" MB of {cluster['corpus']}); {per_doc:.0f} B a document, {exch:.0f} B of it exchanged "
        f"between phases ({exch / per_doc:.0%})"
    )
    print(
        f"assumed: {args.node_gbit:g} Gbit/s per {args.cores_per_node}-core node to shared "
        "storage"
        + (f" (at most {args.storage_gbs:g} GB/s in all)" if args.storage_gbs > 0 else "")
        + f", ${args.price} per vCPU-hour\n"
    )
    print(
        "| input | cores | compute | storage traffic | total | vCPU-hours | cost |\n"
        "|---|---|---|---|---|---|---|"
    )
    for tb in (1, 10):
        for cores in (64, 640):
            p = project(e2e, eff, tb, cores, args.node_gbit, args.cores_per_node, args.storage_gbs)
            total = p["compute_s"] + p["io_s"]
            hours = cores * total / 3600
            print(
                f"| {tb} TB | {cores} | {fmt_time(p['compute_s'])} | {fmt_time(p['io_s'])} "
                f"({(tb * 1e12 + 3 * p['exchange_bytes']) / 1e12:.1f} TB) | "
                f"**{fmt_time(total)}** | {hours:,.0f} | ${hours * args.price:,.0f} |"
            )
    p = project(e2e, eff, 1, 640, args.node_gbit, args.cores_per_node, args.storage_gbs)
    total = (p["compute_s"] + p["io_s"]) / 60
    print(f"\n{DATA_JUICER}; this projection: {total:.1f} min ({total / 50.8:.0%} of that).")


if __name__ == "__main__":
    main()
