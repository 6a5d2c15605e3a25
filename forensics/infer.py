"""Data-mixture inference end to end: tokenizer + category samples → mixture weights.

:func:`infer_mixture` orchestrates the pure forensics core around Ray and file I/O:

1. **load** — the target's merge list (:func:`~forensics.tokenizer_io.load_merge_list`), the
   first ``T`` merges compiled to a :class:`~forensics.counting.BPEModel`; the categories
   (:func:`~forensics.categories.load_categories` or a ``{name: [paths]}`` dict) and one
   shard plan per category (:func:`~forensics.categories.shard_plan`).
2. **count** — one Ray task per shard, all categories in parallel. A task reads its shard
   (:func:`~forensics.categories.sample_shard`), splits each document into training lines the
   way the target was trained (:meth:`~forensics.pretokenize.Pretokenizer.lines`; whole
   documents with ``document_mode``), pretokenizes, counts distinct pretokens and reduces them
   to final-token counts (:func:`~forensics.counting.count_tokens`). The merge list goes to the
   object store once; each worker process builds the ``BPEModel`` once per merge list
   (module-level cache keyed by a hash of the merges, the base and the pretokenizer).
3. **trajectories** — on the driver: per-token histories once, pair events per category,
   :func:`~forensics.counting.build_trajectories`.
4. **lp** — :func:`~forensics.lp.solve_mixture` (extra keywords pass through).

Sample budget
-------------
A shard is one file of a category: ``shard_plan`` gives each file a cap of ``min(cap, budget
left)``, the budget left subtracting *low estimates* of what earlier files hold, and a task reads
its file from the start up to its cap. The per-file cap is ``shard_bytes`` when given; by
default (``shard_bytes=None``) it is chosen per category as ``max(64 MB, ⌈sample_bytes /
#files⌉)``, so that files large enough always fill the budget (a category stored as one big
file is read up to ``sample_bytes`` by one task), while categories of many files get one
parallel task per file of at most 64 MB.

The low estimates make the plan ask for more than ``sample_bytes`` when files hold more text
than estimated (compressed files expand 3-5x). The driver therefore keeps a category's shards
**in plan order while the bytes kept so far are below ``sample_bytes``** and drops the rest
(tasks not started yet are cancelled as soon as the kept prefix is complete). A shard gives at
most the cap, so a category's sample holds less than ``sample_bytes + cap`` bytes; which shards
are kept depends only on the files' contents, never on task timing, so the sample is
deterministic. The last kept shard is not cut (counts cannot be cut), unlike
:func:`~forensics.categories.sample_text`. When a category ends below ``sample_bytes`` although
some of its files were cut at the cap, a warning says so (raise ``shard_bytes``).

Errors
------
Bad input raises :class:`ForensicsInputError` (a ``ValueError``) with a message naming the
file, category or hub id: missing/unreadable category paths, an empty sample, a sample without
pairs, tokenizers that are not BPE or whose merges reference unknown tokens, hub ids absent from
the cache while offline. A solver failure raises :class:`ForensicsSolveError`. Invalid UTF-8 and
other per-file reading problems are *warnings* (``InferenceResult.warnings`` and per-category
``CategoryStats.warnings``), with the number of bytes or records affected per file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import pickle
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pipeline.readers import INVALID_UTF8, ReadErrors, expand_paths

from .categories import CategoryError, Shard, load_categories, sample_shard, shard_plan
from .counting import (
    BPEModel,
    CategoryCounts,
    TokenHistories,
    build_trajectories,
    category_events,
    choose_merges,
    count_tokens,
    merge_category_counts,
)
from .merges import MergeList, MergeListError
from .pretokenize import Pretokenizer
from .tokenizer_io import load_merge_list

__all__ = [
    "DEFAULT_SHARD_BYTES",
    "CategoryStats",
    "ForensicsError",
    "ForensicsInputError",
    "ForensicsSolveError",
    "InferenceResult",
    "LPDiagnostics",
    "ShardCounts",
    "count_shard",
    "infer_mixture",
    "load_target",
    "resolve_categories",
    "shard_cap",
]

logger = logging.getLogger(__name__)

#: smallest automatic per-file cap: the text one counting task reads at most (bytes)
DEFAULT_SHARD_BYTES = 64_000_000


class ForensicsError(Exception):
    """Base class of the errors :func:`infer_mixture` reports to users (CLI exit code 2)."""


class ForensicsInputError(ForensicsError, ValueError):
    """Unusable input: the message names the file, category or tokenizer at fault."""


class ForensicsSolveError(ForensicsError, RuntimeError):
    """The LP solver failed (infeasible, unbounded, numerical trouble)."""


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------


@dataclass
class CategoryStats:
    """What was read and counted for one category."""

    name: str
    files: list[str]
    bytes: int  # UTF-8 bytes of text counted
    pairs: int  # P_i: adjacent symbol pairs at step 0
    words: int  # pretokens counted
    shards_used: int
    shards_planned: int
    invalid_utf8_bytes: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass
class LPDiagnostics:
    objective: float
    rounds: int
    rows: int
    pair_slacks: int
    optimal: bool
    max_violation: float
    solver: str
    steps_used: int
    T: int
    after: int = 0
    violated_share: float = 0.0  # merges not explained by the categories (LPResult)
    timings: dict[str, float] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)


@dataclass
class InferenceResult:
    """Estimated mixture, sample statistics and diagnostics of one inference."""

    categories: list[str]
    mixture_bytes: dict[str, float]
    mixture_pairs: dict[str, float]
    stats: dict[str, CategoryStats]
    diagnostics: LPDiagnostics
    tokenizer: dict[str, Any]
    settings: dict[str, Any]
    timings: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    intervals: dict[str, dict[str, Any]] | None = None  # bootstrap, byte units
    confidence: float | None = None
    interval_method: str | None = None  # how ``intervals`` were made (calibrated or raw)

    @property
    def mixture(self) -> dict[str, float]:
        """Byte proportions (alias of :attr:`mixture_bytes`)."""
        return self.mixture_bytes

    def ranked(self) -> list[tuple[str, float]]:
        """``(category, byte proportion)`` from the largest share down."""
        return sorted(self.mixture_bytes.items(), key=lambda kv: (-kv[1], kv[0]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; top-level keys ``mixture`` (byte proportions), ``mixture_pairs``,
        ``diagnostics``, ``categories`` (per-category stats), ``tokenizer``, ``settings``,
        ``timings``, ``warnings``."""
        return _jsonable(
            {
                "mixture": self.mixture_bytes,
                "mixture_pairs": self.mixture_pairs,
                "diagnostics": asdict(self.diagnostics),
                "categories": {n: asdict(s) for n, s in self.stats.items()},
                "tokenizer": self.tokenizer,
                "settings": self.settings,
                "timings": self.timings,
                "warnings": self.warnings,
                "intervals": self.intervals,
                "confidence": self.confidence,
                "interval_method": self.interval_method,
            }
        )

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, allow_nan=False)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        return _jsonable(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------


#: document blocks per category for the bootstrap
BOOTSTRAP_BLOCKS = 20


def shard_cap(sample_bytes: int, n_files: int, shard_bytes: int | None = None) -> int:
    """The most text one file (one task) gives a category: ``shard_bytes`` when given, else
    ``max(DEFAULT_SHARD_BYTES, ceil(sample_bytes / n_files))`` (see the module docstring)."""
    if shard_bytes is not None:
        return int(shard_bytes)
    return max(DEFAULT_SHARD_BYTES, -(-int(sample_bytes) // max(1, n_files)))


def load_target(tokenizer: str, *, pattern: str | None = None) -> MergeList:
    """:func:`load_merge_list` with its failures turned into :class:`ForensicsInputError`
    (non-BPE models, merges referencing unknown tokens, missing files, uncached hub ids)."""

    def named(e: BaseException) -> str:
        msg = str(e)
        return msg if str(tokenizer) in msg else f"tokenizer {tokenizer}: {msg}"

    try:
        return load_merge_list(tokenizer, pattern=pattern)
    except (FileNotFoundError, MergeListError, ValueError) as e:
        # MergeListError includes UnsupportedTokenizerError (WordPiece, Unigram, ...);
        # ValueError: a bad pattern, or a pattern for a non byte-level tokenizer
        raise ForensicsInputError(named(e)) from e
    except OSError as e:
        raise ForensicsInputError(f"tokenizer {tokenizer}: cannot read: {e}") from e


def resolve_categories(categories: str | Mapping[str, str | Sequence[str]]) -> dict[str, list[str]]:
    """A category spec (YAML file, folder) or a ``{name: path(s)}`` dict → ``{name: [files]}``.

    Dict entries may be files, folders or globs (expanded by
    :func:`pipeline.readers.expand_paths`). Raises :class:`ForensicsInputError` naming the
    category and the path for anything missing, unreadable or unsupported.
    """
    if isinstance(categories, str):
        try:
            return load_categories(categories)
        except CategoryError as e:
            raise ForensicsInputError(str(e)) from e
        except OSError as e:
            raise ForensicsInputError(f"categories {categories!r}: {e}") from e
    if not isinstance(categories, Mapping) or not categories:
        raise ForensicsInputError("categories: expected a spec path or a non-empty mapping")
    out: dict[str, list[str]] = {}
    for name, entries in categories.items():
        if not isinstance(name, str) or not name.strip():
            raise ForensicsInputError(f"invalid category name {name!r}")
        patterns = [entries] if isinstance(entries, str) else list(entries)
        if not patterns or not all(isinstance(p, str) and p for p in patterns):
            raise ForensicsInputError(f"category {name!r}: expected paths, got {entries!r}")
        files: list[str] = []
        for p in patterns:
            try:
                found = expand_paths(p)
            except FileNotFoundError as e:
                raise ForensicsInputError(f"category {name!r}: {p}: not found ({e})") from e
            except (OSError, ValueError) as e:
                raise ForensicsInputError(f"category {name!r}: {p}: cannot be used ({e})") from e
            files.extend(f for f in found if f not in files)
        out[name] = files
    return out


# ----------------------------------------------------------------------------------------------
# Counting (runs in Ray workers; count_shard itself needs no Ray)
# ----------------------------------------------------------------------------------------------


@dataclass
class ShardCounts:
    """The result of counting one shard."""

    category: str
    index: int  # position in the category's shard plan
    url: str
    counts: CategoryCounts
    n_bytes: int
    n_docs: int
    hit_cap: bool
    errors: ReadErrors
    seconds: float
    blocks: list[CategoryCounts] | None = None  # per block of documents (for the bootstrap)


def count_texts(
    model: BPEModel,
    pretokenizer: Pretokenizer,
    texts: Iterable[str],
    *,
    document_mode: bool = False,
    n_bytes: int | None = None,
) -> CategoryCounts:
    """Final-token counts of documents, read in lines as the target was trained (or whole
    documents with ``document_mode``). ``n_bytes``: the sample's size as read (default: the
    documents' UTF-8 size)."""
    words: Counter[str] = Counter()
    size = 0
    for doc in texts:
        if n_bytes is None:
            size += len(doc.encode("utf-8"))
        if document_mode:
            words.update(pretokenizer.pretokenize(doc))
        else:
            words.update(pretokenizer.pretokenize_document(doc))
    return count_tokens(model, words, size if n_bytes is None else n_bytes)


def count_shard(
    model: BPEModel,
    pretokenizer: Pretokenizer,
    shard: Shard,
    *,
    index: int = 0,
    document_mode: bool = False,
    text_field: str = "text",
    n_blocks: int = 1,
) -> ShardCounts:
    """Read one shard and count its final tokens (what a Ray task runs); with ``n_blocks > 1``
    also per block of consecutive documents (the bootstrap resamples blocks)."""
    t0 = time.perf_counter()
    errors = ReadErrors()
    sample = sample_shard(shard, errors=errors, text_field=text_field)
    blocks = None
    if n_blocks > 1 and len(sample.texts) > 1:
        from .bootstrap import DocumentBlocks

        blocks = DocumentBlocks.count(
            model, pretokenizer, sample.texts, n_blocks=n_blocks, document_mode=document_mode
        ).blocks
        counts = dataclasses.replace(merge_category_counts(blocks), n_bytes=sample.n_bytes)
    else:
        counts = count_texts(
            model, pretokenizer, sample.texts, document_mode=document_mode, n_bytes=sample.n_bytes
        )
        blocks = [counts] if n_blocks > 1 else None
    return ShardCounts(
        category=shard.category,
        index=index,
        url=shard.url,
        counts=counts,
        n_bytes=sample.n_bytes,
        n_docs=len(sample.texts),
        hit_cap=sample.hit_cap,
        errors=errors,
        seconds=time.perf_counter() - t0,
        blocks=blocks,
    )


_WORKER_CACHE: dict[str, tuple[BPEModel, Pretokenizer]] = {}
_WORKER_CACHE_SIZE = 2


def _merge_list_key(ml: MergeList, T: int) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(pickle.dumps((ml.merges[:T], ml.base, sorted(ml.alphabet), ml.pretokenizer)))
    return h.hexdigest()


def _worker_model(key: str, box: list, T: int) -> tuple[BPEModel, Pretokenizer]:
    """The ``(BPEModel, Pretokenizer)`` of a merge list, built once per worker process."""
    hit = _WORKER_CACHE.get(key)
    if hit is None:
        ml = box[0]
        if not isinstance(ml, MergeList):
            import ray

            ml = ray.get(ml)
        hit = (BPEModel(ml.merges[:T], ml.base, ml.alphabet), Pretokenizer(ml.pretokenizer))
        while len(_WORKER_CACHE) >= _WORKER_CACHE_SIZE:
            _WORKER_CACHE.pop(next(iter(_WORKER_CACHE)))
        _WORKER_CACHE[key] = hit
    return hit


def _count_task(
    key: str,
    box: list,
    T: int,
    shard: Shard,
    index: int,
    document_mode: bool,
    text_field: str,
    n_blocks: int = 1,
) -> ShardCounts:
    model, pt = _worker_model(key, box, T)
    return count_shard(
        model,
        pt,
        shard,
        index=index,
        document_mode=document_mode,
        text_field=text_field,
        n_blocks=n_blocks,
    )


_REMOTE_COUNT = None


def _remote_count():
    global _REMOTE_COUNT
    if _REMOTE_COUNT is None:
        import ray

        _REMOTE_COUNT = ray.remote(num_cpus=1, max_retries=1)(_count_task)
    return _REMOTE_COUNT


@dataclass
class _CategoryAccumulator:
    """Shard results of one category, merged in plan order as the prefix completes."""

    name: str
    n_planned: int
    budget: int
    pending: dict[int, ShardCounts] = field(default_factory=dict)
    next_index: int = 0
    kept_bytes: int = 0
    kept: list[ShardCounts] = field(default_factory=list)
    counts: CategoryCounts | None = None
    errors: ReadErrors = field(default_factory=ReadErrors)
    blocks: list[CategoryCounts] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.kept_bytes >= self.budget or self.next_index >= self.n_planned

    def add(self, res: ShardCounts) -> None:
        self.pending[res.index] = res
        while not self.complete and self.next_index in self.pending:
            r = self.pending.pop(self.next_index)
            self.next_index += 1
            self.kept.append(r)
            self.kept_bytes += r.n_bytes
            self.errors.merge(r.errors)
            parts = [r.counts] if self.counts is None else [self.counts, r.counts]
            self.counts = merge_category_counts(parts)
            self.blocks.extend(r.blocks or [])
            r.counts = r.blocks = None  # type: ignore[assignment]  # merged; free the arrays
        if self.complete:
            self.pending.clear()


def _count_categories(
    ml: MergeList,
    T: int,
    plans: dict[str, list[Shard]],
    *,
    sample_bytes: int,
    document_mode: bool,
    text_field: str,
    progress: Callable[[dict], None] | None,
    blocks_per_category: int = 1,
) -> dict[str, _CategoryAccumulator]:
    import ray
    from ray.exceptions import RayError, RayTaskError, TaskCancelledError

    key = _merge_list_key(ml, T)
    box = [ray.put(ml)]  # nested: workers fetch it only on a cache miss
    remote = _remote_count()
    acc = {
        name: _CategoryAccumulator(name, len(plan), sample_bytes) for name, plan in plans.items()
    }
    # interleave categories so that every category's first shards run first
    order = [
        (name, i)
        for i in range(max((len(p) for p in plans.values()), default=0))
        for name, p in plans.items()
        if i < len(p)
    ]
    pending: dict[Any, tuple[str, int]] = {}
    for name, i in order:
        n_blocks = -(-blocks_per_category // len(plans[name])) if blocks_per_category > 1 else 1
        ref = remote.remote(key, box, T, plans[name][i], i, document_mode, text_field, n_blocks)
        pending[ref] = (name, i)
    total = len(pending)
    done = skipped = 0
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            name, i = pending.pop(ref)
            try:
                res: ShardCounts = ray.get(ref)
            except TaskCancelledError:
                continue
            except RayTaskError as e:
                cause = e.cause if getattr(e, "cause", None) is not None else e
                raise ForensicsError(
                    f"category {name!r}: counting {plans[name][i].url} failed: "
                    f"{type(cause).__name__}: {cause}"
                ) from e
            except RayError as e:
                raise ForensicsError(
                    f"category {name!r}: counting task for {plans[name][i].url} was lost: {e}"
                ) from e
            done += 1
            a = acc[name]
            a.add(res)
            if a.complete:  # cancel this category's shards that can no longer be kept
                for r2, (n2, _) in list(pending.items()):
                    if n2 == name:
                        ray.cancel(r2)
                        pending.pop(r2)
                        skipped += 1
            if progress:
                progress(
                    {
                        "phase": "count",
                        "done": done,
                        "total": total - skipped,
                        "skipped": skipped,
                        "category": name,
                        "shard": i,
                        "url": res.url,
                        "bytes": res.n_bytes,
                        "seconds": res.seconds,
                    }
                )
    return acc


# ----------------------------------------------------------------------------------------------
# The whole inference
# ----------------------------------------------------------------------------------------------


def infer_mixture(
    tokenizer: str,
    categories: str | Mapping[str, str | Sequence[str]],
    *,
    sample_bytes: float = 1e9,
    n_merges: int | str | None = None,
    document_mode: bool = False,
    pattern: str | None = None,
    solver: str = "highs",
    shard_bytes: int | None = None,
    address: str | None = None,
    text_field: str = "text",
    after: int = 0,
    bootstrap: int = 0,
    confidence: float = 0.9,
    seed: int = 0,
    calibration: str | None = "",
    on_count_progress: Callable[[dict], None] | None = None,
    on_lp_progress: Callable[[dict], None] | None = None,
    on_bootstrap_progress: Callable[[dict], None] | None = None,
    **lp_options: Any,
) -> InferenceResult:
    """Infer the byte mixture of ``tokenizer``'s training data over ``categories``.

    ``tokenizer``: a file, folder or hub id (see :func:`load_merge_list`); ``categories``: a
    YAML spec, a folder of category files or ``{name: path(s)}``. ``sample_bytes`` of text per
    category (see the module docstring for the exact budget rule), the first ``n_merges``
    merges (all by default; ``"auto"``: T chosen from the data by
    :func:`~forensics.counting.choose_merges`). ``document_mode`` counts whole documents instead of lines (for
    targets trained on whole documents). ``after=K`` attacks merges ``K+1..T`` only, the first
    ``K`` pre-applied (an extended vocabulary: K = the base tokenizer's merges). ``bootstrap=B``
    re-solves the LP on ``B`` resamples of each category's documents (20 blocks per category)
    and reports a ``confidence`` interval per proportion (:mod:`forensics.bootstrap`): by
    default calibrated on controlled experiments (``calibration``: a calibration file; ``""``
    the one shipped in the package, ``None`` the raw estimate ± z·sd), the raw bounds kept as
    ``raw_lower``/``raw_upper``. ``on_count_progress`` receives one dict per finished shard, ``on_lp_progress`` one per LP
    round, ``on_bootstrap_progress`` one per replicate. Extra keywords go to
    :func:`forensics.lp.solve_mixture`.
    """
    from .lp import solve_mixture
    from .raytools import ensure_ray

    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    sample_bytes_i = int(sample_bytes)
    if sample_bytes_i <= 0:
        raise ForensicsInputError(f"sample_bytes must be positive, got {sample_bytes}")
    if shard_bytes is not None and int(shard_bytes) <= 0:
        raise ForensicsInputError(f"shard_bytes must be positive, got {shard_bytes}")
    auto_T = n_merges == "auto"
    if auto_T:
        n_merges = None
    elif n_merges is not None and (not isinstance(n_merges, int) or n_merges <= 0):
        raise ForensicsInputError(f"n_merges must be a positive number or 'auto', got {n_merges!r}")
    if after < 0 or bootstrap < 0 or bootstrap == 1 or not 0 < confidence < 1:
        raise ForensicsInputError(
            f"after must be >= 0 (got {after}), bootstrap 0 or >= 2 (got {bootstrap}) and "
            f"confidence in (0, 1) (got {confidence})"
        )

    # -- load -----------------------------------------------------------------------------------
    t0 = time.perf_counter()
    ml = load_target(tokenizer, pattern=pattern)
    if len(ml) == 0:
        raise ForensicsInputError(f"tokenizer {tokenizer}: the merge list is empty")
    warnings: list[str] = []
    T = len(ml) if n_merges is None else min(int(n_merges), len(ml))
    if n_merges is not None and n_merges > len(ml):
        warnings.append(f"tokenizer has {len(ml)} merges; using all of them, not {n_merges}")
    try:
        model = BPEModel(ml.merges[:T], ml.base, ml.alphabet)
    except ValueError as e:
        raise ForensicsInputError(f"tokenizer {tokenizer}: invalid merge list: {e}") from e
    cats = resolve_categories(categories)
    caps = {name: shard_cap(sample_bytes_i, len(urls), shard_bytes) for name, urls in cats.items()}
    plans = {
        name: shard_plan(urls, sample_bytes=sample_bytes_i, shard_bytes=caps[name], category=name)
        for name, urls in cats.items()
    }
    names = list(cats)
    timings["load"] = time.perf_counter() - t0
    logger.info(
        "%s: %d merges (T=%d); %d categories, %d shards planned",
        tokenizer,
        len(ml),
        T,
        len(names),
        sum(len(p) for p in plans.values()),
    )

    # -- count ----------------------------------------------------------------------------------
    t0 = time.perf_counter()
    try:
        ensure_ray(address)
    except Exception as e:  # connection refused, bad address, resources, ...
        where = address or "a local cluster"
        raise ForensicsError(f"cannot start or connect to Ray ({where}): {e}") from e
    timings["ray_init"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    acc = _count_categories(
        ml,
        T,
        plans,
        sample_bytes=sample_bytes_i,
        document_mode=document_mode,
        text_field=text_field,
        progress=on_count_progress,
        blocks_per_category=BOOTSTRAP_BLOCKS if bootstrap else 1,
    )
    timings["count"] = time.perf_counter() - t0
    logger.info(
        "counted %d bytes in %.1f s", sum(a.kept_bytes for a in acc.values()), timings["count"]
    )

    # -- per-category checks, events, trajectories -----------------------------------------------
    t0 = time.perf_counter()
    histories = TokenHistories(model)
    events = []
    stats: dict[str, CategoryStats] = {}
    for name in names:
        a = acc[name]
        cat_warnings = a.errors.warnings()
        files = cats[name]
        if a.counts is None or a.kept_bytes == 0:
            detail = "; ".join(cat_warnings) if cat_warnings else "no text in its documents"
            raise ForensicsInputError(
                f"category {name!r}: the sample is empty ({', '.join(files)}): {detail}"
            )
        try:
            ev = category_events(model, a.counts, histories)
        except ValueError as e:
            raise ForensicsInputError(f"tokenizer {tokenizer}: {e}") from e
        if ev.total_pairs <= 0:
            raise ForensicsInputError(
                f"category {name!r}: its sample ({a.kept_bytes} bytes in {', '.join(files)}) "
                "has no adjacent symbol pairs (every pretoken is a single symbol)"
            )
        events.append(ev)
        stats[name] = CategoryStats(
            name=name,
            files=files,
            bytes=a.kept_bytes,
            pairs=int(ev.total_pairs),
            words=int(a.counts.n_words),
            shards_used=len(a.kept),
            shards_planned=a.n_planned,
            invalid_utf8_bytes=a.errors.count(INVALID_UTF8),
            warnings=cat_warnings,
        )
        warnings.extend(f"category {name!r}: {w}" for w in cat_warnings)
        # files that stopped at their cap while more of the budget was left
        capped, before = [], 0
        for r in a.kept:
            if r.hit_cap and plans[name][r.index].max_bytes < sample_bytes_i - before:
                capped.append(r.url)
            before += r.n_bytes
        if a.kept_bytes < sample_bytes_i and capped:
            warnings.append(
                f"category {name!r}: sample of {a.kept_bytes} bytes, below sample_bytes "
                f"({sample_bytes_i}), because {len(capped)} file(s) were cut at the per-file "
                f"cap of {caps[name]} bytes (e.g. {capped[0]}); raise shard_bytes"
            )
    tr = build_trajectories(model, names, events, T)
    if auto_T:  # T from the data: where the merges' own counts fade into sampling noise
        T_data = after + choose_merges(tr.merge_counts[:, after:].sum(axis=0))
        if T_data < T:
            T = T_data
            tr = build_trajectories(model, names, events, T)
    timings["trajectories"] = time.perf_counter() - t0

    # -- LP -------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    try:
        lp = solve_mixture(tr, solver=solver, after=after, progress=on_lp_progress, **lp_options)
    except TypeError as e:  # an LP option this version of solve_mixture does not know
        raise ForensicsInputError(f"invalid LP option(s) {sorted(lp_options)}: {e}") from e
    except ValueError as e:  # no merge present in any sample, unknown solver, ...
        raise ForensicsInputError(f"cannot set up the mixture LP: {e}") from e
    except RuntimeError as e:  # infeasible / unbounded / solver failure
        raise ForensicsSolveError(f"the mixture LP failed ({solver}): {e}") from e
    timings["lp"] = time.perf_counter() - t0
    intervals = None
    interval_method = None
    if bootstrap:
        from .bootstrap import DocumentBlocks, bootstrap_mixture

        t0 = time.perf_counter()
        boot = bootstrap_mixture(
            model,
            histories,
            [DocumentBlocks(acc[name].blocks) for name in names],
            names,
            T,
            bootstrap,
            seed=seed,
            confidence=confidence,
            point=np.asarray(lp.alpha_bytes),
            progress=on_bootstrap_progress,
            solver=solver,
            after=after,
            **lp_options,
        )
        from .bootstrap import load_calibration

        intervals = {
            name: {
                "lower": float(boot.lower[j]),
                "upper": float(boot.upper[j]),
                "raw_lower": float(boot.lower[j]),
                "raw_upper": float(boot.upper[j]),
                "std": float(boot.std[j]),
                "blocks": boot.blocks[j],
            }
            for j, name in enumerate(names)
        }
        cal = load_calibration(calibration or None) if calibration is not None else None
        interval_method = (
            f"uncalibrated: estimate ± z·(bootstrap sd of {bootstrap} replicates); it ignores "
            "the training sample's own noise and was measured to be too narrow"
        )
        if cal is not None:
            lo_c, hi_c = cal.bounds(np.asarray(lp.alpha_bytes), boot.std, confidence)
            for j, name in enumerate(names):
                intervals[name]["lower"] = float(lo_c[j])
                intervals[name]["upper"] = float(hi_c[j])
            interval_method = "calibrated on controlled experiments, " + cal.describe(confidence)
            if not math.isfinite(cal.q(confidence)):
                warnings.append(
                    f"the calibration holds {len(cal.scores)} residuals, too few for a "
                    f"{100 * confidence:g}% interval: the intervals are [0, 1]"
                )
        if after:
            warnings.append(
                f"after = {after}: on the merges an extension added the intervals are too "
                "narrow (they covered far fewer than 90 % of the categories in controlled "
                "extensions, docs/results.md): a category whose text the base already "
                "compresses gets few of those merges and is bounded only from above, so read "
                "the shares as bounds"
            )
        timings["bootstrap"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    if not lp.optimal:
        warnings.append(
            f"the LP stopped after {lp.rounds} rounds without proving optimality "
            f"(max violation {lp.max_violation:.3g}): the estimate is approximate"
        )

    ab = np.asarray(lp.alpha_bytes, dtype=np.float64)
    ap = np.asarray(lp.alpha_pairs, dtype=np.float64)
    diag = LPDiagnostics(
        objective=float(lp.objective),
        rounds=int(lp.rounds),
        rows=int(lp.rows),
        pair_slacks=int(lp.pair_slacks),
        optimal=bool(lp.optimal),
        max_violation=float(lp.max_violation),
        solver=str(lp.solver),
        steps_used=int(lp.steps_used),
        T=int(T),
        after=int(after),
        violated_share=float(lp.violated_share or 0.0),
        timings={k: float(v) for k, v in (lp.timings or {}).items()},
        history=[_scalars(h) for h in (lp.history or [])],
    )
    spec = ml.pretokenizer
    return InferenceResult(
        categories=names,
        mixture_bytes=dict(zip(names, _normalised(ab), strict=True)),
        mixture_pairs=dict(zip(names, _normalised(ap), strict=True)),
        stats=stats,
        diagnostics=diag,
        tokenizer={
            "source": str(tokenizer),
            "name": ml.name,
            "format": ml.source_format,
            "base": ml.base,
            "n_merges": len(ml),
            "T": int(T),
            "pretokenizer": spec.kind,
            "pattern": spec.pattern_name,
            "line_mode": not document_mode,
            "dropped_redundant": ml.dropped_redundant,
        },
        settings={
            "sample_bytes": sample_bytes_i,
            "shard_bytes": shard_bytes,
            "shard_caps": caps,
            "document_mode": bool(document_mode),
            "solver": solver,
            "text_field": text_field,
            "lp_options": _jsonable(dict(lp_options)),
        },
        timings=timings,
        warnings=warnings,
        intervals=intervals,
        confidence=confidence if bootstrap else None,
        interval_method=interval_method,
    )


def _scalars(info: Mapping[str, Any]) -> dict[str, Any]:
    """The scalar entries of an LP round record (per-round α vectors are left out)."""
    out = {}
    for k, v in info.items():
        v = _jsonable(v)
        if isinstance(v, str | int | float | bool) or v is None:
            out[str(k)] = v
    return out


def _normalised(x: np.ndarray) -> list[float]:
    x = np.clip(np.nan_to_num(x, nan=0.0), 0.0, None)
    s = float(x.sum())
    if s <= 0:
        raise ForensicsSolveError("the LP returned an all-zero mixture")
    return [float(v) for v in x / s]
