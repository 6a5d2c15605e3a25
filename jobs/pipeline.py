"""Ray job entrypoint of the corpus pipeline.

    python -m jobs.pipeline config.yaml [--address ADDR] [--output DIR] [--overwrite]
    ray job submit --address http://head:8265 --working-dir . -- python -m jobs.pipeline config.yaml

Inside ``ray job submit`` the driver finds the cluster through ``RAY_ADDRESS`` (set by Ray);
locally, without an address, a local Ray is started (:func:`forensics.raytools.ensure_ray`).
The config is a local path or an fsspec URL; the output folder (``output``, ``--output``) a
local path or an fsspec URL that every node can write (``file://`` on shared storage, ``s3://``).
The cluster connected to is logged (stderr); the pipeline's progress (each phase, the end) is
printed before the report's headline (stdout; the headline, one JSON line, comes last).
Exits 0, or 2 on a configuration/input error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

__all__ = ["main"]


def _say(msg: str) -> None:
    """The pipeline's progress: on stdout (flushed, so that it interleaves with the logs of
    ``ray job logs`` in order), the headline JSON staying the last line."""
    print(msg, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m jobs.pipeline", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("config", help="pipeline config (YAML)")
    ap.add_argument("--address", default=None, help="Ray address (else RAY_ADDRESS, else local)")
    ap.add_argument("--output", default=None, help="override the config's output")
    ap.add_argument("--overwrite", action="store_true", help="delete an existing output first")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from jobs.config import connect_ray
    from pipeline.config import ConfigError, load_config
    from pipeline.executor import run_pipeline

    try:
        over = {"output": args.output}
        if args.address:
            over["executor"] = {"address": args.address}
        cfg = load_config(args.config, **over)  # a local path or an fsspec URL
        ex = cfg["executor"]
        connect_ray(ex.get("address"), error=ConfigError, num_cpus=ex.get("num_cpus"))
        report = run_pipeline(cfg, overwrite=args.overwrite, progress=_say)
    except (ConfigError, FileNotFoundError) as exc:
        if isinstance(exc, FileNotFoundError) and not exc.filename:  # no file named: where?
            import traceback

            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    head = {
        k: report[k]
        for k in ("input_documents", "kept_documents", "removed_documents", "accounted")
    }
    print(json.dumps(head))
    return 0


if __name__ == "__main__":
    sys.exit(main())
