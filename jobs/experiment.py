"""Ray job entrypoint of the controlled experiments: ``python -m jobs.experiment CONFIG.yaml``.

    python -m jobs.experiment config.yaml [--address ADDR]
    ray job submit --address http://head:8265 -- python -m jobs.experiment config.yaml

The config (YAML) names the categories, the output folder (fsspec URL) and any field of
:class:`forensics.experiment.ExperimentConfig`::

    categories: /data/categories/           # YAML spec or folder, as for mixtrace infer
    setting: languages                      # all | languages | code | mixed (default all)
    out: s3://bucket/experiments/run-1      # trials.parquet/json, summary.json, PNGs
    n: 5
    trials: 20
    vocab_size: 30000
    trainer: bytelevel-digits
    bootstrap: 20
    weights: {en: 0.5, ko: 0.3, ja: 0.2}    # fixed weights instead of draws (optional)

Trials run as Ray tasks; the cluster, each finished trial and the outputs written are logged.
Prints a one-line JSON summary (median log10 MSE per method); exits 2 on a configuration or
input error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from typing import Any

__all__ = ["main"]

logger = logging.getLogger("mixtrace.experiment")


def _config(path: str) -> tuple[dict[str, Any], Any]:
    from forensics.experiment import ExperimentConfig, ExperimentError
    from jobs.config import read_job_config

    fields = {f.name for f in dataclasses.fields(ExperimentConfig)}
    raw = read_job_config(
        path,
        fields | {"categories", "setting", "out"},
        required=("categories", "out"),
        error=ExperimentError,
    )
    kwargs = {k: v for k, v in raw.items() if k in fields}
    if isinstance(kwargs.get("weights"), dict):
        kwargs["weights"] = tuple((str(c), float(w)) for c, w in kwargs["weights"].items())
    for key in ("sweep_merges", "sweep_attack_bytes"):
        if key in kwargs:
            kwargs[key] = tuple(int(x) for x in kwargs[key])
    try:
        cfg = ExperimentConfig(**kwargs)
    except TypeError as e:
        raise ExperimentError(f"{path}: {e}") from None
    return raw, cfg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m jobs.experiment", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("config", help="experiment config (YAML, local path or fsspec URL)")
    ap.add_argument("--address", default=None, help="Ray address (else RAY_ADDRESS, else local)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from forensics.experiment import (
        ExperimentError,
        run_experiment,
        summarize,
        write_results,
    )
    from forensics.infer import ForensicsError, resolve_categories
    from jobs.cli import Setting, _pool
    from jobs.config import connect_ray

    try:
        raw, cfg = _config(args.config)
        try:
            setting = Setting(raw.get("setting", "all"))
        except ValueError:
            raise ExperimentError(
                f"{args.config}: setting must be one of {[s.value for s in Setting]}"
            ) from None
        pool = _pool(resolve_categories(raw["categories"]), setting)
        cfg.check(list(pool))

        def on_trial(rec: dict) -> None:
            scores = {m: round(v, 2) for m, v in rec["log10_mse"].items()}
            logger.info("trial %d done: log10 MSE %s", rec["trial"], scores)

        connect_ray(args.address, error=ExperimentError)
        logger.info(
            "running %d trial(s) of %s categories each from %d (setting %s)",
            cfg.trials,
            cfg.n,
            len(pool),
            setting.value,
        )
        records = run_experiment(cfg, pool, address=args.address, on_trial=on_trial)
        paths = write_results(records, str(raw["out"]))
        logger.info("wrote %s", ", ".join(paths.values()))
    except (ExperimentError, ForensicsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    medians = {s.method: s.median for s in summarize(records)}
    print(json.dumps({"trials": len(records), "median_log10_mse": medians, "outputs": paths}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
