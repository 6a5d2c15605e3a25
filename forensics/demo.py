"""A controlled mixture-inference experiment on the project's own sample data.

:func:`run_demo` reproduces the paper's protocol at toy scale, offline, in about 15 s on two
cores:

1. pick ``n`` categories of a folder of category files (by default ``data/sample``; with
   ``n == 5`` the fixed list :data:`DEFAULT_DEMO_CATEGORIES`, otherwise a seeded draw);
2. draw mixture weights uniformly from the simplex (seeded Dirichlet(1, ..., 1));
3. split every category's documents into disjoint train / attack halves
   (:func:`~forensics.categories.split_documents`);
4. train a byte-level BPE (:func:`~forensics.training.train_bpe`) on the weighted mixture of
   the train halves (:func:`~forensics.training.mixture_sample`, ``n × bytes_per_category``
   bytes in all) and write its ``tokenizer.json`` to a temporary folder;
5. write the attack halves as ``.jsonl`` files and run :func:`~forensics.infer.infer_mixture`
   on them, through the same readers as any real run;
6. compare the estimate with the byte proportions actually used for training (the drawn
   weights rounded to whole documents, and capped by the train halves' size).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.readers import ReadErrors

from .categories import sample_text, split_documents
from .infer import ForensicsInputError, InferenceResult, infer_mixture, resolve_categories
from .training import mixture_sample, train_bpe

__all__ = [
    "DEFAULT_DEMO_CATEGORIES",
    "DEFAULT_SAMPLE_DIR",
    "DemoResult",
    "pick_categories",
    "run_demo",
]

DEFAULT_SAMPLE_DIR = Path(__file__).resolve().parents[1] / "data" / "sample"
DEFAULT_DEMO_CATEGORIES = ("en", "ko", "ja", "code-python", "de")


@dataclass
class DemoResult:
    names: list[str]
    weights: dict[str, float]  # drawn from the simplex
    true_bytes: dict[str, int]  # bytes of each category in the training text
    truth: dict[str, float]  # true byte proportions
    estimate: dict[str, float]  # inferred byte proportions
    mse: float
    log10_mse: float
    vocab_size: int
    n_merges: int
    seed: int
    result: InferenceResult
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": self.names,
            "seed": self.seed,
            "weights": self.weights,
            "true_bytes": self.true_bytes,
            "truth": self.truth,
            "estimate": self.estimate,
            "mse": self.mse,
            "log10_mse": self.log10_mse if math.isfinite(self.log10_mse) else None,
            "vocab_size": self.vocab_size,
            "n_merges": self.n_merges,
            "timings": self.timings,
            "inference": self.result.to_dict(),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)


def pick_categories(
    available: Sequence[str], n: int, seed: int, names: Sequence[str] | None = None
) -> list[str]:
    """The demo's categories: ``names`` if given, the fixed default list when ``n`` matches it
    and all are available, else ``n`` categories drawn (seeded) from the sorted ``available``."""
    avail = sorted(available)
    if names:
        missing = [c for c in names if c not in avail]
        if missing:
            raise ForensicsInputError(
                f"unknown demo categories {missing}; available: {', '.join(avail)}"
            )
        if len(set(names)) != len(names):
            raise ForensicsInputError(f"duplicate demo categories in {list(names)}")
        return list(names)
    if n < 2:
        raise ForensicsInputError(f"the demo needs at least 2 categories, got n={n}")
    if n > len(avail):
        raise ForensicsInputError(f"n={n} but only {len(avail)} categories are available")
    if n == len(DEFAULT_DEMO_CATEGORIES) and all(c in avail for c in DEFAULT_DEMO_CATEGORIES):
        return list(DEFAULT_DEMO_CATEGORIES)
    rng = np.random.default_rng([seed, 1])
    return [avail[i] for i in sorted(rng.choice(len(avail), size=n, replace=False))]


def run_demo(
    categories: str | Path = DEFAULT_SAMPLE_DIR,
    *,
    n: int = 5,
    vocab_size: int = 5000,
    seed: int = 0,
    names: Sequence[str] | None = None,
    bytes_per_category: int = 150_000,
    solver: str = "highs",
    address: str | None = None,
    workdir: str | Path | None = None,
    on_count_progress: Callable[[dict], None] | None = None,
    on_lp_progress: Callable[[dict], None] | None = None,
    **lp_options: Any,
) -> DemoResult:
    """Run the controlled experiment described in the module docstring.

    ``workdir`` keeps the trained ``tokenizer.json`` and the attack files there (a temporary
    folder, removed afterwards, by default).
    """
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    cats = resolve_categories(str(categories))
    chosen = pick_categories(list(cats), n, seed, names)
    weights_arr = np.random.default_rng([seed, 2]).dirichlet(np.ones(len(chosen)))
    weights = {c: float(w) for c, w in zip(chosen, weights_arr, strict=True)}

    t0 = time.perf_counter()
    train: dict[str, list[str]] = {}
    attack: dict[str, list[str]] = {}
    for c in chosen:
        errors = ReadErrors()
        docs = sample_text(cats[c], sample_bytes=1 << 40, errors=errors)
        tr, at = split_documents(docs, 0.5, seed)
        if not tr or not at:
            raise ForensicsInputError(
                f"category {c!r} has {len(docs)} document(s): too few to split in two"
            )
        train[c], attack[c] = tr, at
    texts, true_bytes = mixture_sample(train, weights, len(chosen) * bytes_per_category)
    timings["prepare"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    tokenizer_json = train_bpe(texts, vocab_size)
    timings["train"] = time.perf_counter() - t0

    with tempfile.TemporaryDirectory(prefix="mixtrace-demo-") as tmp:
        root = Path(workdir) if workdir is not None else Path(tmp)
        (root / "attack").mkdir(parents=True, exist_ok=True)
        tok_path = root / "tokenizer.json"
        tok_path.write_text(tokenizer_json, encoding="utf-8")
        attack_files: dict[str, str] = {}
        for c in chosen:
            path = root / "attack" / f"{c}.jsonl"
            with path.open("w", encoding="utf-8") as fh:
                for i, doc in enumerate(attack[c]):
                    fh.write(json.dumps({"id": f"{c}-{i}", "text": doc}, ensure_ascii=False))
                    fh.write("\n")
            attack_files[c] = str(path)
        t0 = time.perf_counter()
        result = infer_mixture(
            str(tok_path),
            attack_files,
            sample_bytes=1e12,
            solver=solver,
            address=address,
            on_count_progress=on_count_progress,
            on_lp_progress=on_lp_progress,
            **lp_options,
        )
        timings["infer"] = time.perf_counter() - t0

    total = sum(true_bytes.values())
    if total == 0:
        raise ForensicsInputError("the training mixture is empty (documents larger than shares)")
    truth = {c: true_bytes[c] / total for c in chosen}
    timings["total"] = time.perf_counter() - t_start
    return _demo_result(chosen, weights, true_bytes, truth, result, vocab_size, seed, timings)


def _demo_result(
    chosen: list[str],
    weights: dict[str, float],
    true_bytes: dict[str, int],
    truth: dict[str, float],
    result: InferenceResult,
    vocab_size: int,
    seed: int,
    timings: dict[str, float],
) -> DemoResult:
    est = result.mixture_bytes
    mse = float(np.mean([(truth[c] - est[c]) ** 2 for c in chosen]))
    return DemoResult(
        names=chosen,
        weights=weights,
        true_bytes=true_bytes,
        truth=truth,
        estimate=dict(est),
        mse=mse,
        log10_mse=math.log10(mse) if mse > 0 else float("-inf"),
        vocab_size=vocab_size,
        n_merges=int(result.tokenizer["n_merges"]),
        seed=seed,
        result=result,
        timings=timings,
    )


#: categories of the end-to-end demo: the sample's natural languages that keep the most text
#: through the pipeline's quality filters (code documents are filtered out as non-prose)
PIPELINE_DEMO_CATEGORIES = ("en", "ko", "de", "ru", "zh")


def _split_by_id(ids: Sequence[str], seed: int) -> np.ndarray:
    """A deterministic half of the documents (True: training side), by a hash of id + seed."""
    import xxhash

    return np.array(
        [xxhash.xxh3_64_intdigest(f"{seed}:{i}".encode()) & 1 == 0 for i in ids], dtype=bool
    )


def run_pipeline_demo(
    sample_dir: str | Path = DEFAULT_SAMPLE_DIR,
    *,
    workdir: str | Path,
    n: int = 5,
    names: Sequence[str] | None = None,
    vocab_size: int = 4000,
    seed: int = 0,
    pretokenizer: str = "bytelevel-digits",
    solver: str = "highs",
    address: str | None = None,
    progress: Callable[[str], None] | None = None,
    on_count_progress: Callable[[dict], None] | None = None,
    on_lp_progress: Callable[[dict], None] | None = None,
    **lp_options: Any,
) -> DemoResult:
    """The product end to end on the bundled sample (``mixtrace demo``):

    1. the corpus pipeline (:func:`pipeline.executor.run_pipeline`) cleans, deduplicates and
       shards every sample file into ``workdir/pipeline`` (each document's ``source`` is its
       file's category);
    2. the kept documents of ``n`` categories are split in two by a hash of their id: the
       training side is written as Parquet shards, the attacker side per category;
    3. ``mixtrace bpe train`` (:func:`pipeline.bpe.train.train_from_shards`) counts the
       training shards on Ray with a byte mixture drawn from the simplex over ``source`` and
       trains a byte-level BPE from the counts;
    4. ``mixtrace infer`` (:func:`~forensics.infer.infer_mixture`) recovers the mixture from the
       tokenizer and the attacker side; the truth is the bytes the trainer actually used.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.bpe.count import BPEInputError
    from pipeline.bpe.train import train_from_shards
    from pipeline.config import ConfigError, load_config
    from pipeline.executor import run_pipeline
    from pipeline.paths import safe_component

    say = progress or (lambda _m: None)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    root = Path(workdir)
    cfg = load_config(
        None,
        inputs=[{"path": str(sample_dir)}],
        output=str(root / "pipeline"),
        executor={"address": address} if address else None,
    )
    t0 = time.perf_counter()
    try:
        report = run_pipeline(cfg, overwrite=True, progress=say)
    except (ConfigError, FileNotFoundError) as e:
        raise ForensicsInputError(f"pipeline: {e}") from None
    timings["pipeline"] = time.perf_counter() - t0
    say(
        f"pipeline: kept {report['kept_documents']:,} of {report['input_documents']:,} "
        f"documents ({report['kept_bytes'] / 1e6:.2f} MB)"
    )

    table = pq.read_table(str(root / "pipeline" / "data"), columns=["id", "text", "source"])
    kept = table.group_by("source").aggregate([("id", "count")]).to_pylist()
    available = sorted(r["source"] for r in kept if r["id_count"] >= 4)
    if names is None and n == len(PIPELINE_DEMO_CATEGORIES):
        names = [c for c in PIPELINE_DEMO_CATEGORIES if c in available] or None
    chosen = pick_categories(available, n, seed, names)
    weights_arr = np.random.default_rng([seed, 2]).dirichlet(np.ones(len(chosen)))
    weights = {c: float(w) for c, w in zip(chosen, weights_arr, strict=True)}

    rows = table.to_pylist()
    train_rows, attack_files = [], {}
    (root / "attack").mkdir(parents=True, exist_ok=True)
    for c in chosen:
        docs = [r for r in rows if r["source"] == c]
        side = _split_by_id([r["id"] for r in docs], seed)
        train_rows += [r for r, s in zip(docs, side.tolist(), strict=True) if s]
        attack = [r for r, s in zip(docs, side.tolist(), strict=True) if not s]
        path = root / "attack" / f"{safe_component(c)}.parquet"
        pq.write_table(pa.Table.from_pylist(attack), path)
        attack_files[c] = str(path)
    (root / "train-shards").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(train_rows), root / "train-shards" / "part-00000.parquet")

    t0 = time.perf_counter()
    mix = ",".join(f"{c}={w!r}" for c, w in weights.items())
    try:
        trained = train_from_shards(
            str(root / "train-shards"),
            vocab_size,
            pretokenizer=pretokenizer,
            mix=mix,
            mix_column="source",
            out=str(root / "tokenizer"),
            address=address,
        )
    except BPEInputError as e:
        raise ForensicsInputError(f"bpe train: {e}") from None
    timings["train"] = time.perf_counter() - t0
    counting = trained.report["counting"]
    say(
        f"bpe train: {counting['total_bytes'] / 1e6:.2f} MB of the training side in the mixture "
        + ", ".join(f"{c} {w:.3f}" for c, w in weights.items())
        + f"; {trained.report['training']['merges']:,} merges"
    )

    t0 = time.perf_counter()
    result = infer_mixture(
        str(root / "tokenizer" / "tokenizer.json"),
        attack_files,
        sample_bytes=1e12,
        solver=solver,
        address=address,
        on_count_progress=on_count_progress,
        on_lp_progress=on_lp_progress,
        **lp_options,
    )
    timings["infer"] = time.perf_counter() - t0
    true_bytes = {c: int(counting["bytes"].get(c, 0)) for c in chosen}
    truth = {c: float(counting["true_mixture"].get(c, 0.0)) for c in chosen}
    timings["total"] = time.perf_counter() - t_start
    return _demo_result(chosen, weights, true_bytes, truth, result, vocab_size, seed, timings)
