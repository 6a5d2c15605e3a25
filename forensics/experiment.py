"""Controlled experiments: train a tokenizer on a known mixture, attack it, score every method.

One *trial* (:func:`run_trial`, what a Ray task runs) follows Hayase et al. (2024, §5):

1. draw ``n`` categories of the pool and their weights uniformly from the simplex;
2. split each category's documents into disjoint attacker and training parts: with
   ``split="rest"`` (default) the attacker gets ``bytes_per_category`` of randomly chosen whole
   documents and the training side the rest of what is read (up to ``bytes_per_category +
   train_bytes`` per category, i.e. all of a ~3 MB corpus file); ``split="halves"`` (the first
   protocol) reads ``2 × bytes_per_category`` and halves it; each side is then put in a random
   order, so that the documents the mixture takes from the front of a training part are a
   random sample of the category (not the first pages of its corpus file);
3. train a BPE tokenizer (``trainer``: byte-level with digits split, GPT-2 byte-level, or
   SentencePiece BPE) on the weighted mixture of the training parts (``train_bytes`` in all,
   default ``n × bytes_per_category``, i.e. as much training as attacker text per category on
   average). A category whose share of ``train_bytes`` exceeds its training part contributes
   all of it (the weight is capped there; the truth is the bytes actually used);
4. count the attacker halves against its merge list and solve the LP (:mod:`forensics.lp`), with
   ``withhold`` of the categories hidden from the attack (the unknown-category experiment);
5. run the baselines (:mod:`forensics.baselines`) on the same text;
6. optionally bootstrap the attack (:func:`forensics.bootstrap.bootstrap_mixture`): the raw
   interval (estimate ± z·sd) and, when ``forensics/calibration.json`` exists, the calibrated
   one (:class:`forensics.bootstrap.Calibration`).

The truth is the byte share of each category in the training text actually used. Scores are
MSE over all ``n`` categories (a withheld category's estimate is 0).
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.readers import ReadErrors

from .baselines import random_guess, tc_estimate, tee_estimate
from .bootstrap import Calibration, DocumentBlocks, bootstrap_mixture, load_calibration
from .categories import sample_text, split_documents
from .counting import (
    BPEModel,
    TokenHistories,
    build_trajectories,
    category_events,
    choose_merges,
)
from .infer import count_texts
from .lp import solve_mixture
from .merges import MergeList
from .pretokenize import Pretokenizer
from .tokenizer_io import load_merge_list
from .training import (
    TRAINERS,
    continue_bpe,
    mixture_sample,
    train_bpe,
    train_sentencepiece_bpe,
)

__all__ = [
    "METHODS",
    "ExperimentConfig",
    "ExperimentError",
    "choose_merges",
    "run_trial",
]

METHODS = ("attack", "random", "tee", "tc")


class ExperimentError(ValueError):
    """The experiment cannot run as configured (names the category or setting)."""


@dataclass(frozen=True)
class ExperimentConfig:
    n: int = 5
    trials: int = 20
    vocab_size: int = 30000
    bytes_per_category: int = 1_000_000  # attacker text per category (split="halves": each half)
    train_bytes: int | None = None  # the training mixture's size (default: see total_train_bytes)
    split: str = "rest"  # "rest": attacker bytes_per_category, training the rest; or "halves"
    trainer: str = "bytelevel-digits"
    merges: int | str | None = None  # T: an int, "auto" (chosen from the data) or None (all)
    after: int = 0  # attack merges after+1.. only (the first ones pre-applied)
    extend: int = 0  # extension experiment: merges added on a second mixture (0: off)
    withhold: int = 0  # categories trained on but not given to the attack
    bootstrap: int = 0  # resamples for confidence intervals (0: none)
    confidence: float = 0.9
    baselines: bool = True
    seed: int = 0
    attack_bytes: int | None = None  # cap each attacker half (whole documents)
    sweep_merges: tuple[int, ...] = ()  # also score the attack at these T (a curve)
    sweep_attack_bytes: tuple[int, ...] = ()  # ... and with this much attacker text
    weights: tuple[tuple[str, float], ...] | None = None  # fixed (category, weight), sum 1
    calibration: str | None = ""  # interval calibration file ("": the shipped one; None: off)

    def check(self, pool: Sequence[str]) -> None:
        if self.weights is not None:
            names = [c for c, _ in self.weights]
            unknown = [c for c in names if c not in pool]
            if unknown:
                raise ExperimentError(f"weights name unknown categories {unknown}")
            if len(set(names)) != len(names) or len(names) != self.n:
                raise ExperimentError(
                    f"weights must name {self.n} distinct categories (n), got {names}"
                )
            total = sum(w for _, w in self.weights)
            if any(w < 0 for _, w in self.weights) or abs(total - 1.0) > 1e-6:
                raise ExperimentError(
                    f"explicit weights must be non-negative and sum to 1, they sum to {total:.6g}"
                )
        if self.split not in ("rest", "halves"):
            raise ExperimentError(f"split must be 'rest' or 'halves', not {self.split!r}")
        if self.trainer not in TRAINERS:
            raise ExperimentError(f"trainer must be one of {TRAINERS}, not {self.trainer!r}")
        if self.n < 2:
            raise ExperimentError(f"n must be at least 2, got {self.n}")
        if len(pool) < self.n:
            raise ExperimentError(
                f"n = {self.n} but only {len(pool)} categories are given: {', '.join(pool)}"
            )
        if not 0 <= self.withhold < self.n:
            raise ExperimentError(f"withhold must be in [0, n), got {self.withhold}")
        if self.trials < 1 or self.bytes_per_category < 1000:
            raise ExperimentError("trials must be ≥ 1 and bytes_per_category ≥ 1,000")
        if self.after < 0 or not 0 < self.confidence < 1:
            raise ExperimentError("after must be ≥ 0 and confidence in (0, 1)")
        if self.extend < 0 or (self.extend and self.after):
            raise ExperimentError("extend must be ≥ 0, and is not combined with after")
        if self.extend and self.trainer == "sentencepiece":
            raise ExperimentError("the extension experiment continues a byte-level BPE")

    @property
    def total_train_bytes(self) -> int:
        """The training mixture's size: ``train_bytes``, else ``n × bytes_per_category`` (as
        much as the attacker's text per category, on average; ``split="halves"``: n × half)."""
        if self.train_bytes:
            return self.train_bytes
        if self.split == "halves":
            return self.n * self.bytes_per_category // 2
        return self.n * self.bytes_per_category

    @property
    def read_bytes(self) -> int:
        """Text read per category: attacker text plus the most the training side can use."""
        if self.split == "halves":
            return 2 * self.bytes_per_category
        return self.bytes_per_category + self.total_train_bytes


def log10_mse(estimate: Sequence[float], truth: Sequence[float]) -> float:
    mse = float(np.mean((np.asarray(estimate) - np.asarray(truth)) ** 2))
    return math.log10(mse) if mse > 0 else -math.inf


# ------------------------------------------------------------------------------------------
# training targets
# ------------------------------------------------------------------------------------------
def train_target(texts: Sequence[str], vocab_size: int, trainer: str, workdir: Path) -> MergeList:
    """Train a tokenizer of the given kind on ``texts`` and load its merge list."""
    if trainer == "sentencepiece":
        try:
            model = train_sentencepiece_bpe(texts, vocab_size)
        except (RuntimeError, ValueError) as e:
            raise ExperimentError(
                f"SentencePiece cannot train a vocabulary of {vocab_size} on "
                f"{sum(len(t) for t in texts):,} characters: {e}"
            ) from None
        path = workdir / "tokenizer.model"
        path.write_bytes(model)
        return load_merge_list(str(path))
    path = workdir / "tokenizer.json"
    path.write_text(train_bpe(texts, vocab_size, pretokenizer=trainer), encoding="utf-8")
    ml = load_merge_list(str(path))
    wanted = vocab_size - 256
    if len(ml.merges) < wanted:
        raise ExperimentError(
            f"vocab size {vocab_size} cannot be reached: the training text "
            f"({sum(len(t.encode()) for t in texts):,} bytes) gives only {len(ml.merges)} "
            f"merges ({len(ml.merges) + 256} tokens); lower --vocab-size or add text"
        )
    return ml


def extend_merge_list(
    ml: MergeList, pre: Pretokenizer, texts: Sequence[str], n_new: int
) -> MergeList:
    """``ml`` with ``n_new`` merges trained further on ``texts`` (:func:`continue_bpe`)."""
    from collections import Counter

    words: Counter[str] = Counter()
    for doc in texts:
        words.update(pre.pretokenize_document(doc))
    new = continue_bpe(ml.merges, ml.base, ml.alphabet, words, n_new)
    if len(new) < n_new:
        raise ExperimentError(
            f"the extension text gives only {len(new)} new merges, not {n_new}: lower --extend"
        )
    return dataclasses.replace(
        ml, merges=ml.merges + tuple(new), name=f"{ml.name}+{n_new}", source_format="extended"
    )


def _spread(values: np.ndarray, seen: Sequence[str], names: Sequence[str]) -> np.ndarray:
    """Values over ``seen`` placed in the order of ``names`` (0 for the others)."""
    got = dict(zip(seen, np.asarray(values).tolist(), strict=True))
    return np.array([got.get(c, 0.0) for c in names])


def _first_bytes(docs: Sequence[str], limit: int) -> list[str]:
    """The first documents up to ``limit`` UTF-8 bytes (at least one)."""
    out, got = [], 0
    for d in docs:
        n = len(d.encode("utf-8"))
        if out and got + n > limit:
            break
        out.append(d)
        got += n
    return out


def _bytes_per_token(ml: MergeList, docs: Sequence[str]) -> float:
    model = BPEModel(ml.merges, ml.base, ml.alphabet)
    cc = count_texts(model, Pretokenizer.from_spec(ml.pretokenizer), docs)
    tokens = int(cc.uni_counts.sum())
    return cc.n_bytes / tokens if tokens else 0.0


# ------------------------------------------------------------------------------------------
# one trial
# ------------------------------------------------------------------------------------------
def _category_docs(
    name: str, urls: Sequence[str], cfg: ExperimentConfig, split_seed: int
) -> tuple[list[str], list[str]]:
    errors = ReadErrors()
    docs = sample_text(list(urls), sample_bytes=cfg.read_bytes, errors=errors)
    if errors.has_file_errors:
        raise ExperimentError(f"category {name!r}: {'; '.join(errors.warnings())}")
    if cfg.split == "halves":
        train, attack = split_documents(docs, 0.5, seed=split_seed)
    else:
        train, attack = split_attack_rest(docs, cfg.bytes_per_category, split_seed)
    # both sides in a random order: the training mixture (and a capped attacker side) takes
    # documents from the front, and a corpus file's order is its own (manual by manual, one
    # project's files after another's): its first documents are not a sample of the category
    order = np.random.default_rng([split_seed, zlib.crc32(name.encode("utf-8"))])
    train = [train[i] for i in order.permutation(len(train))]
    attack = [attack[i] for i in order.permutation(len(attack))]
    if not train or not attack:
        raise ExperimentError(
            f"category {name!r} ({', '.join(urls)}) has {len(docs)} document(s): too few to "
            "split into training and attacker halves"
        )
    return train, attack


def split_attack_rest(
    docs: Sequence[str], attack_bytes: int, seed: int
) -> tuple[list[str], list[str]]:
    """``(train, attack)``: the attacker gets whole documents drawn at random (seeded) up to
    ``attack_bytes`` UTF-8 bytes (the one that crosses the budget only if that leaves the total
    closer to it), the training side every other document; both keep the original order. At
    least one document goes to each side when there are two or more."""
    order = np.random.default_rng(seed).permutation(len(docs))
    take: list[int] = []
    got = 0
    for i in order[: max(0, len(docs) - 1)]:
        n = len(docs[i].encode("utf-8"))
        if take and got + n > attack_bytes and got + n - attack_bytes >= attack_bytes - got:
            break
        take.append(int(i))
        got += n
        if got >= attack_bytes:
            break
    chosen = set(take)
    attack = [docs[i] for i in sorted(chosen)]
    train = [d for i, d in enumerate(docs) if i not in chosen]
    return train, attack


def run_trial(
    cfg: ExperimentConfig,
    trial: int,
    pool: Mapping[str, Sequence[str]],
    *,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """One trial; returns a JSON-able record (see the module docstring)."""
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    names_all = list(pool)
    cfg.check(names_all)
    rng = np.random.default_rng([cfg.seed, trial])
    pick = np.sort(rng.choice(len(names_all), size=cfg.n, replace=False))
    names = [names_all[i] for i in pick]
    weights = rng.dirichlet(np.ones(cfg.n))
    if cfg.weights is not None:  # fixed categories and weights (the draws above keep the seed)
        names = [c for c, _ in cfg.weights]
        weights = np.array([w for _, w in cfg.weights])
    split_seed = int(rng.integers(1 << 31))
    # drawn after the split: a trial with withhold = 0 draws nothing here, so the same trial
    # with one category hidden has the same categories, weights and split
    hidden = set(rng.choice(names, size=cfg.withhold, replace=False).tolist())
    seen = [c for c in names if c not in hidden]

    t0 = time.perf_counter()
    train, attack = {}, {}
    for c in names:
        train[c], attack[c] = _category_docs(c, pool[c], cfg, split_seed)
        if cfg.attack_bytes:
            attack[c] = _first_bytes(attack[c], cfg.attack_bytes)
    weights_b = rng.dirichlet(np.ones(cfg.n)) if cfg.extend else None
    train_b = train
    if weights_b is not None:
        # the base and the extension learn from disjoint documents: a base fitted to the very
        # documents of the extension leaves them (unlike the attack text) little to merge
        train, train_b = {}, dict(train)
        for c in names:
            train[c], train_b[c] = split_documents(train_b[c], 0.5, seed=split_seed + 1)
    texts, used = mixture_sample(
        train, dict(zip(names, weights.tolist(), strict=True)), cfg.total_train_bytes
    )
    timings["prepare"] = time.perf_counter() - t0

    with tempfile.TemporaryDirectory(prefix="mixtrace-exp-") as tmp:
        t0 = time.perf_counter()
        ml = train_target(texts, cfg.vocab_size, cfg.trainer, Path(tmp))
        pre = Pretokenizer.from_spec(ml.pretokenizer)
        K = cfg.after
        if weights_b is not None:
            # extension: the base above saw mixture A; continue its training on mixture B and
            # attack the added merges only (the truth is B)
            texts, used = mixture_sample(
                train_b, dict(zip(names, weights_b.tolist(), strict=True)), cfg.total_train_bytes
            )
            ml, K = extend_merge_list(ml, pre, texts, cfg.extend), len(ml.merges)
        timings["train"] = time.perf_counter() - t0
        total = sum(used.values())
        if total == 0:
            raise ExperimentError("the training mixture is empty: raise --bytes-per-category")
        truth = np.array([used[c] / total for c in names])
        model = BPEModel(ml.merges, ml.base, ml.alphabet)
        hist = TokenHistories(model)

        t0 = time.perf_counter()
        blocks = {c: DocumentBlocks.count(model, pre, attack[c]) for c in names}
        counts = {c: blocks[c].total() for c in names}
        events = [category_events(model, counts[c], hist) for c in seen]
        tr_all = build_trajectories(model, seen, events, model.n_merges)
        timings["count"] = time.perf_counter() - t0
        if cfg.merges == "auto":
            T = K + choose_merges(tr_all.merge_counts[:, K:].sum(axis=0))
        else:
            T = min(int(cfg.merges or model.n_merges), model.n_merges)
        if K >= T:
            raise ExperimentError(f"after = {K} leaves no merge to attack (T = {T})")
        tr = build_trajectories(model, seen, events, T) if T < model.n_merges else tr_all
        curves: dict[str, dict[str, float]] = {}
        if cfg.sweep_merges:
            curves["merges"] = {}
            for t in cfg.sweep_merges:
                if K < t <= model.n_merges:
                    r_t = solve_mixture(build_trajectories(model, seen, events, t), after=K)
                    curves["merges"][str(t)] = log10_mse(
                        _spread(r_t.alpha_bytes, seen, names), truth
                    )
        if cfg.sweep_attack_bytes:
            curves["attack_bytes"] = {}
            for size in cfg.sweep_attack_bytes:
                ev = [
                    category_events(
                        model, count_texts(model, pre, _first_bytes(attack[c], size)), hist
                    )
                    for c in seen
                ]
                tr_s = build_trajectories(model, seen, ev, model.n_merges)
                T_s = T
                if cfg.merges == "auto":
                    T_s = K + choose_merges(tr_s.merge_counts[:, K:].sum(axis=0))
                r_s = solve_mixture(build_trajectories(model, seen, ev, T_s), after=K)
                curves["attack_bytes"][str(size)] = log10_mse(
                    _spread(r_s.alpha_bytes, seen, names), truth
                )

        t0 = time.perf_counter()
        res = solve_mixture(tr, after=K)
        timings["lp"] = time.perf_counter() - t0
        estimates: dict[str, list[float]] = {
            "attack": _spread(res.alpha_bytes, seen, names).tolist()
        }
        record_lp = {
            "objective": res.objective,
            "rounds": res.rounds,
            "rows": res.rows,
            "optimal": res.optimal,
            "seconds": timings["lp"],
            "violated_share": res.violated_share,
        }
        interval = None
        if cfg.bootstrap:
            t0 = time.perf_counter()
            boot = bootstrap_mixture(
                model,
                hist,
                [blocks[c] for c in seen],
                seen,
                T,
                cfg.bootstrap,
                seed=int(rng.integers(1 << 31)),
                confidence=cfg.confidence,
                point=np.asarray(res.alpha_bytes),
                after=K,
            )
            col = {c: j for j, c in enumerate(seen)}

            def spread(x: np.ndarray) -> list[float]:
                return [float(x[col[c]]) if c in col else 0.0 for c in names]

            sd = boot.samples.std(axis=0, ddof=1)
            interval = {
                "sd": spread(sd),
                "raw_lower": spread(boot.lower),  # estimate ± z·sd (attacker noise only)
                "raw_upper": spread(boot.upper),
                "lower": spread(boot.lower),
                "upper": spread(boot.upper),
                "calibration": None,
                "replicates": [spread(s) for s in boot.samples],
            }
            cal = load_calibration(cfg.calibration or None) if cfg.calibration is not None else None
            if cal is not None:
                lo_c, hi_c = cal.bounds(np.asarray(res.alpha_bytes), sd, cfg.confidence)
                interval["lower"], interval["upper"] = spread(lo_c), spread(hi_c)
                interval["calibration"] = {
                    "q": cal.q(cfg.confidence),
                    "floor": cal.floor,
                    "source": cal.source,
                }
            timings["bootstrap"] = time.perf_counter() - t0

        if cfg.baselines:
            t0 = time.perf_counter()
            estimates["random"] = random_guess(cfg.n, rng).tolist()
            # TC over the tokens the attacked merges made (all, or the extension's)
            estimates["tc"] = tc_estimate([counts[c] for c in names], model.n_base + K).tolist()
            bpt_mix, bpt_single = [], []
            for c in names if weights_b is None else ():  # TEE: not defined for an extension
                mix = counts[c].n_bytes / max(1, int(counts[c].uni_counts.sum()))
                own_dir = Path(tmp) / f"own-{names.index(c)}"
                own_dir.mkdir()
                own_text, _ = mixture_sample({c: train[c]}, {c: 1.0}, cfg.total_train_bytes)
                own = train_target_capped(own_text, cfg.vocab_size, cfg.trainer, own_dir)
                bpt_mix.append(mix)
                bpt_single.append(_bytes_per_token(own, attack[c]))
            if bpt_mix:
                estimates["tee"] = tee_estimate(bpt_mix, bpt_single).tolist()
            timings["baselines"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    return {
        "trial": trial,
        "seed": cfg.seed,
        "categories": names,
        "withheld": sorted(hidden),
        "weights": (weights if weights_b is None else weights_b).tolist(),
        "truth": truth.tolist(),
        "true_bytes": [int(used[c]) for c in names],
        "attack_bytes": [int(counts[c].n_bytes) for c in names],
        "estimates": estimates,
        "log10_mse": {m: log10_mse(e, truth) for m, e in estimates.items()},
        "interval": interval,
        "n_merges": int(model.n_merges),
        "T": int(T),
        "after": K,
        "weights_base": weights.tolist() if weights_b is not None else None,
        "lp": record_lp,
        "curves": curves,
        "timings": timings,
        "config": asdict(cfg),
    }


def train_target_capped(texts: Sequence[str], vocab_size: int, trainer: str, workdir: Path):
    """:func:`train_target` for a baseline's single-category tokenizer: one category may not
    reach the mixture's vocabulary size; then it keeps what its text gives (the most a
    tokenizer trained on that category alone can learn)."""
    try:
        return train_target(texts, vocab_size, trainer, workdir)
    except ExperimentError:
        if trainer == "sentencepiece":
            for size in (vocab_size // 2, vocab_size // 4, vocab_size // 8, 1000):
                try:
                    return train_target(texts, size, trainer, workdir)
                except ExperimentError:
                    continue
            raise
        path = workdir / "tokenizer.json"
        return load_merge_list(str(path))


@dataclass
class Summary:
    method: str
    trials: int
    mean: float
    std: float
    median: float
    values: list[float] = field(default_factory=list)


def summarize(records: Sequence[Mapping[str, Any]]) -> list[Summary]:
    """Mean ± std and median of log10 MSE per method over the trials."""
    out = []
    methods = [m for m in METHODS if any(m in r["log10_mse"] for r in records)]
    for m in methods:
        vals = [float(r["log10_mse"][m]) for r in records if m in r["log10_mse"]]
        finite = [v for v in vals if math.isfinite(v)]
        arr = np.array(finite) if finite else np.array([np.nan])
        out.append(
            Summary(
                method=m,
                trials=len(vals),
                mean=float(arr.mean()),
                std=float(arr.std(ddof=1)) if len(finite) > 1 else 0.0,
                median=float(np.median(np.array(vals))),
                values=vals,
            )
        )
    return out


def coverage(records: Sequence[Mapping[str, Any]], *, raw: bool = False) -> float | None:
    """Share of (trial, category) pairs whose bootstrap interval holds the truth (withheld
    categories left out): the reported (calibrated when a calibration was applied) interval,
    or with ``raw`` the uncalibrated estimate ± z·sd."""
    hit = tot = 0
    for r in records:
        iv = r.get("interval")
        if not iv:
            continue
        kind = "raw_" if raw and "raw_lower" in iv else ""
        lows, ups = iv[kind + "lower"], iv[kind + "upper"]
        for c, t, lo, hi in zip(r["categories"], r["truth"], lows, ups, strict=True):
            if c in r.get("withheld", ()):
                continue
            tot += 1
            hit += lo <= t <= hi
    return hit / tot if tot else None


# ------------------------------------------------------------------------------------------
# many trials on Ray, outputs
# ------------------------------------------------------------------------------------------
def _trial_task(cfg_dict: dict, trial: int, pool: dict) -> dict:
    return run_trial(ExperimentConfig(**cfg_dict), trial, pool)


def run_experiment(
    cfg: ExperimentConfig,
    pool: Mapping[str, Sequence[str]],
    *,
    address: str | None = None,
    on_trial: Callable[[dict], None] | None = None,
    trials: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """All trials of ``cfg`` (or the trial numbers ``trials``) as Ray tasks (one CPU each);
    records in trial order. A trial depends only on ``cfg`` and its number."""
    import ray

    from .raytools import ensure_ray

    cfg.check(list(pool))
    ensure_ray(address)
    remote = ray.remote(num_cpus=1, max_retries=1)(_trial_task)
    pool_ref = ray.put({k: list(v) for k, v in pool.items()})
    todo = range(cfg.trials) if trials is None else trials
    pending = {remote.remote(asdict(cfg), t, pool_ref): t for t in todo}
    records: dict[int, dict] = {}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                pending.pop(ref)
                try:
                    rec = ray.get(ref)
                except ray.exceptions.RayTaskError as e:
                    cause = e.as_instanceof_cause()
                    if isinstance(cause, ExperimentError):
                        raise ExperimentError(str(cause).splitlines()[-1]) from None
                    raise
                records[rec["trial"]] = rec
                if on_trial:
                    on_trial(rec)
    finally:
        for ref in pending:
            ray.cancel(ref)
    return [records[t] for t in sorted(records)]


def results_table(records: Sequence[Mapping[str, Any]]):
    """One row per (trial, method, category): a ``pyarrow.Table``."""
    import pyarrow as pa

    rows: dict[str, list] = {
        k: []
        for k in (
            "trial",
            "method",
            "category",
            "withheld",
            "truth",
            "estimate",
            "lower",
            "upper",
            "log10_mse",
            "n",
            "T",
            "after",
            "trainer",
            "vocab_size",
        )
    }
    for r in records:
        iv = r.get("interval") or {}
        for m, est in r["estimates"].items():
            for j, c in enumerate(r["categories"]):
                rows["trial"].append(r["trial"])
                rows["method"].append(m)
                rows["category"].append(c)
                rows["withheld"].append(c in r["withheld"])
                rows["truth"].append(r["truth"][j])
                rows["estimate"].append(est[j])
                rows["lower"].append(iv["lower"][j] if iv and m == "attack" else None)
                rows["upper"].append(iv["upper"][j] if iv and m == "attack" else None)
                rows["log10_mse"].append(r["log10_mse"][m])
                rows["n"].append(len(r["categories"]))
                rows["T"].append(r["T"])
                rows["after"].append(r["after"])
                rows["trainer"].append(r["config"]["trainer"])
                rows["vocab_size"].append(r["config"]["vocab_size"])
    schema = pa.schema(
        [
            ("trial", pa.int32()),
            ("method", pa.string()),
            ("category", pa.string()),
            ("withheld", pa.bool_()),
            ("truth", pa.float64()),
            ("estimate", pa.float64()),
            ("lower", pa.float64()),
            ("upper", pa.float64()),
            ("log10_mse", pa.float64()),
            ("n", pa.int32()),
            ("T", pa.int32()),
            ("after", pa.int32()),
            ("trainer", pa.string()),
            ("vocab_size", pa.int32()),
        ]
    )
    return pa.Table.from_pydict(rows, schema=schema)


def _mean_width(records: Sequence[Mapping[str, Any]]) -> float | None:
    w = [
        hi - lo
        for r in records
        if r.get("interval")
        for c, lo, hi in zip(
            r["categories"], r["interval"]["lower"], r["interval"]["upper"], strict=True
        )
        if c not in r.get("withheld", ())
    ]
    return float(np.mean(w)) if w else None


def calibration_triples(
    records: Sequence[Mapping[str, Any]],
) -> tuple[list[float], list[float], list[float]]:
    """(attack estimate, bootstrap sd, truth) of every (trial, category) with an interval."""
    e, s, t = [], [], []
    for r in records:
        iv = r.get("interval")
        if not iv or "sd" not in iv:
            continue
        for j, c in enumerate(r["categories"]):
            if c in r.get("withheld", ()):
                continue
            e.append(float(r["estimates"]["attack"][j]))
            s.append(float(iv["sd"][j]))
            t.append(float(r["truth"][j]))
    return e, s, t


def recalibrate(
    records: Sequence[Mapping[str, Any]], cal: Calibration, confidence: float = 0.9
) -> list[dict[str, Any]]:
    """The records with their reported interval recomputed from the saved estimate and
    bootstrap sd under ``cal`` (a calibration refitted after the trials ran), at each record's
    own confidence (``confidence`` when it has none); records without a bootstrap interval are
    returned as they are. Withheld categories keep the empty interval [0, 0] of
    :func:`run_trial`."""
    out = []
    for r in records:
        iv = r.get("interval")
        if not iv or "sd" not in iv:
            out.append(dict(r))
            continue
        conf = float(r.get("config", {}).get("confidence", confidence))
        lo, hi = cal.bounds(np.asarray(r["estimates"]["attack"]), np.asarray(iv["sd"]), conf)
        hidden = np.isin(r["categories"], list(r.get("withheld", ())))
        lo[hidden] = hi[hidden] = 0.0
        iv = {
            **iv,
            "lower": lo.tolist(),
            "upper": hi.tolist(),
            "calibration": {"q": cal.q(conf), "floor": cal.floor, "source": cal.source},
        }
        out.append({**r, "interval": iv})
    return out


def summary_dict(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    summ = summarize(records)
    out: dict[str, Any] = {
        "trials": len(records),
        "methods": {
            s.method: {"mean": s.mean, "std": s.std, "median": s.median, "trials": s.trials}
            for s in summ
        },
        "coverage": coverage(records),
        "coverage_raw": coverage(records, raw=True),
        "calibrated": any((r.get("interval") or {}).get("calibration") for r in records),
        "interval_width": _mean_width(records),
        "violated_share": float(np.mean([r["lp"]["violated_share"] for r in records]))
        if records
        else None,
    }
    by = {s.method: s for s in summ}
    if "attack" in by:
        for m in ("tee", "tc", "random"):
            if m in by:
                # MSE ratio of the medians: how many times smaller the attack's error is
                out["methods"][m]["attack_mse_ratio"] = 10 ** (by[m].median - by["attack"].median)
    return out


def result_paths(out: str) -> dict[str, str]:
    """The files :func:`write_results` writes under ``out``, by kind."""
    base = out.rstrip("/")
    return {
        "parquet": f"{base}/trials.parquet",
        "json": f"{base}/trials.json",
        "summary": f"{base}/summary.json",
        "mse_plot": f"{base}/log10_mse.png",
        "scatter_plot": f"{base}/true_vs_estimated.png",
    }


def write_results(records: Sequence[Mapping[str, Any]], out: str) -> dict[str, str]:
    """``trials.parquet``, ``trials.json``, ``summary.json`` and two PNGs under ``out``."""
    import json

    import fsspec
    import pyarrow.parquet as pq

    paths = result_paths(out)
    with fsspec.open(paths["parquet"], "wb", auto_mkdir=True) as fh:
        pq.write_table(results_table(records), fh, compression="zstd")
    with fsspec.open(paths["json"], "w", encoding="utf-8", auto_mkdir=True) as fh:
        json.dump(list(records), fh, indent=1, default=_json_default)
    with fsspec.open(paths["summary"], "w", encoding="utf-8", auto_mkdir=True) as fh:
        json.dump(summary_dict(records), fh, indent=1, default=_json_default)
    _write_png(paths["mse_plot"], _plot_mse(records))
    _write_png(paths["scatter_plot"], _plot_scatter(records))
    return paths


def _json_default(x: Any) -> Any:
    if isinstance(x, float | np.floating) and not math.isfinite(float(x)):
        return None
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON-able: {type(x).__name__}")


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _write_png(url: str, fig) -> None:
    import io

    import fsspec

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    with fsspec.open(url, "wb", auto_mkdir=True) as fh:
        fh.write(buf.getvalue())


def _plot_mse(records: Sequence[Mapping[str, Any]]):
    summ = summarize(records)
    fig = _figure(6.5, 4)
    ax = fig.add_subplot()
    data = [[v for v in s.values if math.isfinite(v)] or [np.nan] for s in summ]
    ax.boxplot(data, showmeans=True)
    ax.set_xticks(range(1, len(summ) + 1), [s.method for s in summ])
    ax.set_ylabel("log10 MSE (byte proportions)")
    ax.set_title(f"{len(records)} trials: error per method (lower is better)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def _plot_scatter(records: Sequence[Mapping[str, Any]]):
    fig = _figure(5, 5)
    ax = fig.add_subplot()
    markers = {"attack": "o", "tee": "^", "tc": "s", "random": "x"}
    for m in METHODS:
        xs = [t for r in records if m in r["estimates"] for t in r["truth"]]
        ys = [e for r in records if m in r["estimates"] for e in r["estimates"][m]]
        if xs:
            ax.scatter(xs, ys, s=14, marker=markers[m], label=m, alpha=0.7)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
    ax.set_xlabel("true proportion")
    ax.set_ylabel("estimated proportion")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title("true vs estimated (every trial and category)")
    fig.tight_layout()
    return fig
