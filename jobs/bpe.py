"""Ray job entrypoints of BPE training (count on a cluster, then train from the counts).

    python -m jobs.bpe count config.yaml [--address ADDR]
    python -m jobs.bpe train config.yaml [--address ADDR]
    ray job submit --address http://head:8265 --working-dir . -- python -m jobs.bpe train config.yaml

The config (YAML)::

    shards: s3://bucket/clean/data/          # Parquet shards of the pipeline (folder, glob, list)
    out: s3://bucket/tokenizers/ko-en-64k    # output folder (fsspec URL)
    vocab_size: 64000                        # train only
    pretokenizer: gpt2                       # gpt2 | cl100k | bytelevel-digits
    mix: {ko: 0.6, en: 0.3, "code*": 0.1}    # optional byte mixture over mix_column
    mix_column: lang
    min_count: 1
    counts: s3://bucket/counts/ko-en         # train: read this count table instead of counting

``count`` writes ``OUT/counts/`` (part-*.parquet, counts.json); ``train`` writes
``OUT/tokenizer.json``, ``OUT/counts/`` (when it counted) and ``OUT/train_report.json``.
Progress is logged (stderr): the Ray cluster, each counted shard, the training's start and
end, each output written. Prints a one-line JSON summary; exits 2 on a configuration or input
error. ``train`` from ``counts`` needs no Ray (the training runs in this process).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

__all__ = ["main"]

logger = logging.getLogger("mixtrace.bpe")

_KEYS = {
    "shards",
    "out",
    "vocab_size",
    "pretokenizer",
    "mix",
    "mix_column",
    "min_count",
    "min_frequency",
    "text_field",
    "counts",
}


def _load(path: str) -> dict[str, Any]:
    from jobs.config import read_job_config
    from pipeline.bpe.count import BPEInputError

    return read_job_config(path, _KEYS, required=("out",), error=BPEInputError)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m jobs.bpe", description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["count", "train"])
    ap.add_argument("config", help="job config (YAML, local path or fsspec URL)")
    ap.add_argument("--address", default=None, help="Ray address (else RAY_ADDRESS, else local)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from jobs.config import connect_ray
    from pipeline.bpe.count import BPEInputError, CountTable, count_shards, list_shards
    from pipeline.bpe.train import run_training, train_from_shards, write_tokenizer

    try:
        cfg = _load(args.config)
        out = str(cfg["out"]).rstrip("/")
        common = {
            "mix": cfg.get("mix"),
            "mix_column": cfg.get("mix_column", "lang"),
            "text_field": cfg.get("text_field", "text"),
            "min_count": int(cfg.get("min_count", 1)),
            "address": args.address,
        }
        vocab = cfg.get("vocab_size")
        if args.command == "train" and not isinstance(vocab, int):
            raise BPEInputError(f"{args.config}: 'vocab_size' (an integer) is required")
        if args.command == "count" or not cfg.get("counts"):
            if not cfg.get("shards"):
                raise BPEInputError(f"{args.config}: 'shards' is required")
            list_shards(cfg["shards"])  # a bad shard spec fails before Ray starts
            connect_ray(args.address, error=BPEInputError)
        if args.command == "count":
            table = count_shards(cfg["shards"], cfg.get("pretokenizer", "gpt2"), **common)
            table.write(f"{out}/counts")
            logger.info("wrote the count table to %s/counts", out)
            summary = {"counts": f"{out}/counts", "words": table.num_words, **table.stats}
        else:
            if cfg.get("counts"):
                table = CountTable.read(str(cfg["counts"]))
                logger.info(
                    "read the count table %s: %d words (%s)",
                    cfg["counts"],
                    table.num_words,
                    table.pretokenizer,
                )
                tok, rep = run_training(
                    table, vocab, min_frequency=int(cfg.get("min_frequency", 0))
                )
                report = {"counting": table.stats, "training": rep}
                write_tokenizer(out, tok, report)
            else:
                res = train_from_shards(
                    cfg["shards"],
                    vocab,
                    pretokenizer=cfg.get("pretokenizer", "gpt2"),
                    min_frequency=int(cfg.get("min_frequency", 0)),
                    out=out,
                    **common,
                )
                report = res.report
            summary = {
                "tokenizer": f"{out}/tokenizer.json",
                "merges": report["training"]["merges"],
                "true_mixture": report["counting"].get("true_mixture"),
            }
    except BPEInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
