"""Ray job entry point for mixture inference: ``python -m jobs.infer CONFIG.yaml [--address A]``.

The YAML config holds the arguments of :func:`forensics.infer.infer_mixture`::

    tokenizer: shared/tokenizers/gpt2      # file, folder or hub id (required)
    categories: categories.yaml            # YAML spec or folder (required), or {name: paths}
    sample_bytes: 1e9                      # per category
    merges: 30000                          # first T merges, all (default) or auto
    after: 0                               # attack merges after the first K only
    bootstrap: 0                           # replicates for confidence intervals
    confidence: 0.9
    document_mode: false
    pattern: null                          # regex override for byte-level tokenizers
    solver: highs                          # highs | pulp-highs | pulp-cbc
    shard_bytes: null                      # per-file cap (default max(64 MB, sample/#files))
    json: s3://bucket/results/gpt2.json    # output path or fsspec URL
    plot: results/gpt2.png                 # optional PNG
    lp_options: {}                         # extra keywords for solve_mixture

Relative paths in the config are taken as they are (relative to the working directory, which
``ray job submit --working-dir .`` sets to the uploaded project). Submit with e.g.::

    ray job submit --working-dir . -- python -m jobs.infer config.yaml

The outputs (``json``, ``plot``) are local paths or fsspec URLs (``s3://``, ``file://``,
``memory://``: the driver writes them). Progress goes to ``logging`` (the Ray cluster, each
counted shard, each LP round, the estimate, each output written); exit code 0 on success, 2
for bad input or a failed solve.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

__all__ = ["CONFIG_KEYS", "load_config", "main", "run"]

logger = logging.getLogger("mixtrace.infer")

CONFIG_KEYS = {
    "tokenizer",
    "categories",
    "sample_bytes",
    "merges",
    "after",
    "bootstrap",
    "confidence",
    "document_mode",
    "pattern",
    "solver",
    "shard_bytes",
    "json",
    "plot",
    "text_field",
    "lp_options",
}


def load_config(url: str) -> dict[str, Any]:
    """Read and check a job config (YAML, any fsspec URL)."""
    from forensics.infer import ForensicsInputError
    from jobs.config import read_job_config

    cfg = read_job_config(
        url, CONFIG_KEYS, required=("tokenizer", "categories"), error=ForensicsInputError
    )
    lp_options = cfg.get("lp_options") or {}
    if not isinstance(lp_options, dict):
        raise ForensicsInputError(f"{url}: lp_options must be a mapping")
    return cfg


def run(cfg: dict[str, Any], *, address: str | None = None, ray_seconds: float = 0.0):
    """Run one inference from a checked config and write its outputs; ``ray_seconds``: the
    time already spent connecting to Ray (counted in the result's ``ray_init`` timing)."""
    from forensics.infer import infer_mixture
    from forensics.report import plot_mixture, write_json

    def on_count(info: dict) -> None:
        logger.info(
            "counted %s shard %d (%d bytes, %.1fs): %d/%d shards",
            info["category"],
            info["shard"],
            info["bytes"],
            info["seconds"],
            info["done"],
            info["total"],
        )

    def on_lp(info: dict) -> None:
        logger.info(
            "LP round %s: %s rows, objective %.6g, %s violated",
            info.get("round"),
            info.get("rows"),
            info.get("objective", float("nan")),
            info.get("violated"),
        )

    merges = cfg.get("merges")
    result = infer_mixture(
        str(cfg["tokenizer"]),
        cfg["categories"],
        sample_bytes=float(cfg.get("sample_bytes") or 1e9),
        n_merges=merges if merges in ("auto", None) else None if merges == "all" else int(merges),
        after=int(cfg.get("after") or 0),
        bootstrap=int(cfg.get("bootstrap") or 0),
        confidence=float(cfg.get("confidence") or 0.9),
        document_mode=bool(cfg.get("document_mode", False)),
        pattern=cfg.get("pattern"),
        solver=str(cfg.get("solver") or "highs"),
        shard_bytes=int(float(cfg["shard_bytes"])) if cfg.get("shard_bytes") else None,
        address=address,
        text_field=str(cfg.get("text_field") or "text"),
        on_count_progress=on_count,
        on_lp_progress=on_lp,
        **(cfg.get("lp_options") or {}),
    )
    if ray_seconds:
        result.timings["ray_init"] = result.timings.get("ray_init", 0.0) + ray_seconds
    for w in result.warnings:
        logger.warning("%s", w)
    for name, share in result.ranked():
        logger.info("%-20s %6.2f%% of bytes", name, 100 * share)
    d = result.diagnostics
    logger.info(
        "LP: objective %.6g, %d rounds, %d rows, %d pair slacks, optimal=%s; timings %s",
        d.objective,
        d.rounds,
        d.rows,
        d.pair_slacks,
        d.optimal,
        {k: round(v, 2) for k, v in result.timings.items()},
    )
    if cfg.get("json"):
        write_json(result, str(cfg["json"]))
        logger.info("wrote %s", cfg["json"])
    if cfg.get("plot"):
        plot_mixture(result, str(cfg["plot"]))
        logger.info("wrote %s", cfg["plot"])
    return result


def main(argv: list[str] | None = None) -> int:
    from forensics.infer import ForensicsError

    parser = argparse.ArgumentParser(
        prog="python -m jobs.infer", description=__doc__.split("\n")[0]
    )
    parser.add_argument("config", help="YAML config (path or fsspec URL)")
    parser.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    import time

    from forensics.infer import resolve_categories
    from jobs.config import connect_ray

    try:
        cfg = load_config(args.config)
        resolve_categories(cfg["categories"])  # missing category files fail before Ray starts
        t = time.perf_counter()
        connect_ray(args.address, error=ForensicsError)
        run(cfg, address=args.address, ray_seconds=time.perf_counter() - t)
    except ForensicsError as e:
        logger.error("%s", e)
        return 2
    except OSError as e:  # writing outputs
        logger.error("cannot write outputs: %s", e)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
