"""``mixtrace bpe train``: count on Ray, train from the counts, write the tokenizer and a report.

Output folder::

    tokenizer.json     the trained tokenizer (HF format; loads in tokenizers and transformers)
    counts/            the reduced count table (part-*.parquet, counts.json)
    train_report.json  shards, mixture asked and obtained (bytes per category), words,
                       merges, timings
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .count import BPEInputError, CountTable, count_shards
from .trainer import BPETrainingError, to_tokenizer, train_from_code_points

__all__ = [
    "TRAIN_TASK_OPTIONS",
    "TrainResult",
    "run_training",
    "train_from_shards",
    "train_from_table",
    "write_tokenizer",
]

logger = logging.getLogger(__name__)

#: the training task's Ray options. A runtime env of its own gives it a fresh worker process
#: (Ray reuses workers only within one runtime env), not one that kept the counting tasks'
#: Arrow and polars pools; max_calls=1 lets that worker exit when training is done.
TRAIN_TASK_OPTIONS: dict[str, Any] = {
    "num_cpus": 1,
    "max_calls": 1,
    "runtime_env": {"env_vars": {"MIXTRACE_RAY_TASK": "bpe-train"}},
}


@dataclass
class TrainResult:
    tokenizer_json: str
    table: CountTable
    report: dict[str, Any]


def train_from_table(
    table: CountTable, vocab_size: int, *, min_frequency: int = 0, isolate: bool = True
) -> tuple[str, dict[str, Any]]:
    """``tokenizer.json`` trained from a count table, and the training figures.

    ``isolate`` (default): the compiled trainer runs in a lean child process (see
    :func:`~pipeline.bpe.trainer.train_from_code_points`), so the peak memory of training is
    the trainer's arrays (on the ahead-of-time build of the loop, or numba's runtime where it
    cannot be built), not that on top of Ray, polars and the table."""
    t0 = time.perf_counter()
    cps, lengths, counts = table.code_points()
    t_load = time.perf_counter() - t0
    try:
        trained = train_from_code_points(
            cps, lengths, counts, vocab_size, min_frequency=min_frequency, isolate=isolate
        )
    except BPETrainingError as e:
        raise BPEInputError(str(e)) from None
    tok = to_tokenizer(trained, table.pretokenizer)
    report = {
        "vocab_size": tok.get_vocab_size(),
        "requested_vocab_size": vocab_size,
        "merges": len(trained.merges),
        "duplicate_merges": trained.duplicates,
        "words": len(counts),
        "trainer_peak_rss": trained.peak_rss,  # bytes, the training child process (isolate)
        "trainer_engine": trained.engine,  # "aot" (compiled ahead of time) or "jit" (numba)
        "timings": {"load_counts": t_load, "train": time.perf_counter() - t0 - t_load},
    }
    if tok.get_vocab_size() < vocab_size:
        report["warning"] = (
            f"the counts give only {tok.get_vocab_size()} tokens, not {vocab_size}: "
            "no pair is left to merge (add text or lower --vocab-size)"
        )
    return tok.to_str(), report


def run_training(
    table: CountTable, vocab_size: int, *, min_frequency: int = 0, use_ray: bool = False
) -> tuple[str, dict[str, Any]]:
    """:func:`train_from_table`, logged (start, merges, seconds, any warning); ``use_ray``: in
    a Ray task of its own (:data:`TRAIN_TASK_OPTIONS`), so that the driver never holds the
    trainer's arrays."""
    t = time.perf_counter()
    logger.info(
        "training a byte-level BPE of %d tokens from %d words (%s)",
        vocab_size,
        table.num_words,
        "in a Ray task" if use_ray else "in this process",
    )
    if use_ray:
        import ray

        task = ray.remote(**TRAIN_TASK_OPTIONS)(train_from_table)
        tok_json, report = ray.get(task.remote(table, vocab_size, min_frequency=min_frequency))
    else:
        tok_json, report = train_from_table(table, vocab_size, min_frequency=min_frequency)
    logger.info(
        "trained %d merges (vocab %d, %s engine) in %.1f s",
        report["merges"],
        report["vocab_size"],
        report.get("trainer_engine"),
        time.perf_counter() - t,
    )
    if report.get("warning"):
        logger.warning("%s", report["warning"])
    return tok_json, report


def write_tokenizer(out: str, tokenizer_json: str, report: Mapping[str, Any]) -> list[str]:
    """``OUT/tokenizer.json`` and ``OUT/train_report.json`` (``out``: a folder, any fsspec
    URL); returns their URLs."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(out)
    fs.makedirs(root, exist_ok=True)
    base = out.rstrip("/")
    with fs.open(f"{root}/tokenizer.json", "w") as fh:
        fh.write(tokenizer_json)
    with fs.open(f"{root}/train_report.json", "w") as fh:
        json.dump(report, fh, indent=2, ensure_ascii=False)
    paths = [f"{base}/tokenizer.json", f"{base}/train_report.json"]
    logger.info("wrote %s", ", ".join(paths))
    return paths


def train_from_shards(
    shards: str | Sequence[str],
    vocab_size: int,
    *,
    pretokenizer: str = "gpt2",
    mix: str | Mapping[str, float] | None = None,
    mix_column: str = "lang",
    text_field: str = "text",
    min_count: int = 1,
    min_frequency: int = 0,
    out: str | None = None,
    address: str | None = None,
    use_ray: bool = True,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Count ``shards`` (see :func:`~pipeline.bpe.count.count_shards`; ``progress`` gets one
    dict per counted shard) and train a byte-level BPE of ``vocab_size`` tokens (the 256
    bytes included); write ``out`` when given. Each stage is logged."""
    if vocab_size <= 256:
        raise BPEInputError(f"vocab size {vocab_size} is not above the byte alphabet (256 symbols)")
    table = count_shards(
        shards,
        pretokenizer,
        mix=mix,
        mix_column=mix_column,
        text_field=text_field,
        min_count=min_count,
        address=address,
        use_ray=use_ray,
        progress=progress,
    )
    # on Ray, a worker trains: the driver never holds the trainer's arrays
    tok_json, train_report = run_training(
        table, vocab_size, min_frequency=min_frequency, use_ray=use_ray
    )
    report = {"pretokenizer": pretokenizer, "counting": table.stats, "training": train_report}
    if out:
        counts = f"{out.rstrip('/')}/counts"
        table.write(counts)
        logger.info("wrote the count table to %s", counts)
        write_tokenizer(out, tok_json, report)
    return TrainResult(tok_json, table, report)
