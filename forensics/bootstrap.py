"""Bootstrap confidence intervals for an inferred mixture (pure: counts in, intervals out).

A category's sample is cut into blocks of whole documents, counted once per block
(:class:`DocumentBlocks`). A bootstrap replicate draws, per category, as many blocks as there
are with replacement (multinomial weights), sums the weighted block counts, rebuilds the
trajectories and solves the LP again. The interval of each proportion is the percentile
interval of the replicates (byte units). Counting is done once; a replicate costs one event
aggregation and one LP.

The replicates see only the attacker-side sampling noise: the tokenizer's own training sample
differs from the attacker's text too, so the raw interval (estimate ± z·sd) is too narrow (a
first run covered the truth in 50 % of categories). :class:`Calibration` widens it by split
conformal calibration on controlled experiments (``python bench/results.py --calibrate``):
on calibration trials (seeds never used to measure coverage), each category's normalised
residual ``|estimate − truth| / (sd + floor)`` is a score; for confidence c the factor ``q`` is
the ⌈(m+1)·c⌉-th smallest of the m scores, and the interval is ``estimate ± q·(sd + floor)``,
clipped to [0, 1]. The scores and the floor are stored in ``forensics/calibration.json``.

Group-conditional: when the calibration trials come in groups (settings: natural languages,
code), ``q`` is each group's own conformal quantile and the largest of them is used. A pooled
quantile only promises c over the pooled (trial, category) pairs, and it was measured to
under-cover the noisier group (code 87 %, languages 95 %, on the table's 20 + 20 trials); a
tokenizer given to ``mixtrace infer`` belongs to no known group, so one ``q`` that holds in every
group it was calibrated on is the safe choice (intervals get wider where the groups differ).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist

import numpy as np

from .counting import (
    BPEModel,
    CategoryCounts,
    CategoryEvents,
    TokenHistories,
    build_trajectories,
    category_events,
    merge_category_counts,
)
from .lp import solve_mixture
from .pretokenize import Pretokenizer

__all__ = [
    "CALIBRATION_PATH",
    "BlockEvents",
    "BootstrapResult",
    "Calibration",
    "DocumentBlocks",
    "bootstrap_mixture",
    "conformal_quantile",
    "fit_calibration",
    "load_calibration",
]

#: the calibration shipped with the package (written by ``python bench/results.py --calibrate``)
CALIBRATION_PATH = Path(__file__).with_name("calibration.json")
#: floors tried by :func:`fit_calibration` (byte-share units)
FLOORS = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02)


@dataclass
class DocumentBlocks:
    """Final-token counts of a category sample, per block of consecutive documents."""

    blocks: list[CategoryCounts]

    @classmethod
    def count(
        cls,
        model: BPEModel,
        pretokenizer: Pretokenizer,
        docs: Sequence[str],
        *,
        n_blocks: int = 20,
        document_mode: bool = False,
    ) -> DocumentBlocks:
        from .infer import count_texts

        k = max(1, min(n_blocks, len(docs)))
        edges = np.linspace(0, len(docs), k + 1).astype(int)
        return cls(
            [
                count_texts(model, pretokenizer, docs[a:b], document_mode=document_mode)
                for a, b in itertools.pairwise(edges)
            ]
        )

    @classmethod
    def of(cls, parts: Iterable[CategoryCounts]) -> DocumentBlocks:
        return cls(list(parts))

    def __len__(self) -> int:
        return len(self.blocks)

    def total(self) -> CategoryCounts:
        return merge_category_counts(self.blocks)

    def resample(self, weights: np.ndarray) -> CategoryCounts:
        """Σ_b weights[b] · counts of block b (integer weights)."""
        parts = [
            dataclasses.replace(
                b,
                uni_counts=b.uni_counts * int(w),
                bi_counts=b.bi_counts * int(w),
                n_bytes=b.n_bytes * int(w),
                n_words=b.n_words * int(w),
            )
            for b, w in zip(self.blocks, weights, strict=True)
            if w
        ]
        return merge_category_counts(parts or self.blocks[:1])


class BlockEvents:
    """The pair-count events of each block of one category, combined by weights in O(events).

    Events are linear in a sample's token counts, so the events of a weighted resample are the
    weighted sum of the blocks' events: computed once per block, a replicate costs one
    ``bincount`` instead of a full :func:`category_events`.
    """

    def __init__(self, model: BPEModel, histories: TokenHistories, blocks: DocumentBlocks):
        evs = [category_events(model, b, histories) for b in blocks.blocks]
        self.n_steps = model.n_merges
        comb = [e.keys * (self.n_steps + 1) + e.steps for e in evs]
        self.keys, self.inv = np.unique(np.concatenate(comb), return_inverse=True)
        self.block = np.repeat(np.arange(len(evs)), [len(c) for c in comb])
        self.deltas = np.concatenate([e.deltas for e in evs]).astype(np.float64)
        self.n_bytes = np.array([e.n_bytes for e in evs], dtype=np.int64)
        self.n_blocks = len(evs)

    def combine(self, weights: np.ndarray) -> CategoryEvents:
        w = np.asarray(weights, dtype=np.float64)
        d = np.bincount(self.inv, weights=self.deltas * w[self.block], minlength=len(self.keys))
        d = np.rint(d).astype(np.int64)  # integer sums, exact below 2**53
        nz = d != 0
        k, d = self.keys[nz], d[nz]
        keys, steps = k // (self.n_steps + 1), k % (self.n_steps + 1)
        total = int(d[steps == 0].sum())
        return CategoryEvents(keys, steps, d, total, int(self.n_bytes @ weights))


@dataclass
class BootstrapResult:
    lower: np.ndarray  # (n,) byte proportions
    upper: np.ndarray
    samples: np.ndarray  # (B, n) byte proportions of the replicates
    confidence: float
    blocks: list[int]  # blocks per category

    @property
    def std(self) -> np.ndarray:
        return self.samples.std(axis=0, ddof=1) if len(self.samples) > 1 else np.zeros(0)


def bootstrap_mixture(
    model: BPEModel,
    histories: TokenHistories,
    blocks: Sequence[DocumentBlocks],
    names: Sequence[str],
    n_steps: int,
    replicates: int,
    *,
    seed: int = 0,
    confidence: float = 0.9,
    point: np.ndarray | None = None,
    progress: Callable[[dict], None] | None = None,
    **lp_options,
) -> BootstrapResult:
    """Intervals of the byte proportions over ``replicates`` block resamples.

    With ``point`` (the estimate on the full sample) the interval is ``point ± z·sd`` of the
    replicates (normal interval, clipped to [0, 1]); without it, the percentile interval.
    """
    if replicates < 2:
        raise ValueError(f"the bootstrap needs at least 2 replicates, got {replicates}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    samples = np.empty((replicates, len(names)))
    block_events = [BlockEvents(model, histories, bl) for bl in blocks]
    for r in range(replicates):
        events = []
        for be in block_events:
            w = rng.multinomial(be.n_blocks, np.full(be.n_blocks, 1.0 / be.n_blocks))
            events.append(be.combine(w))
        tr = build_trajectories(model, names, events, n_steps)
        samples[r] = solve_mixture(tr, **lp_options).alpha_bytes
        if progress:
            progress({"replicate": r + 1, "replicates": replicates})
    a = (1 - confidence) / 2
    if point is not None:
        z = NormalDist().inv_cdf(1 - a)
        sd = samples.std(axis=0, ddof=1)
        lower = np.clip(point - z * sd, 0.0, 1.0)
        upper = np.clip(point + z * sd, 0.0, 1.0)
    else:
        lower = np.quantile(samples, a, axis=0)
        upper = np.quantile(samples, 1 - a, axis=0)
    return BootstrapResult(
        lower=lower,
        upper=upper,
        samples=samples,
        confidence=confidence,
        blocks=[len(b) for b in blocks],
    )


# ------------------------------------------------------------------------------------------
# calibration of the interval (split conformal)
# ------------------------------------------------------------------------------------------
def conformal_quantile(scores: Sequence[float], confidence: float) -> float:
    """The split-conformal quantile: the ⌈(m+1)·confidence⌉-th smallest of the m scores
    (``inf`` when m is too small for that confidence: the interval is then [0, 1])."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    s = np.sort(np.asarray(scores, dtype=np.float64))
    m = len(s)
    k = math.ceil((m + 1) * confidence)
    return float(s[k - 1]) if 0 < k <= m else math.inf


def calibrated_bounds(
    point: np.ndarray, sd: np.ndarray, q: float, floor: float
) -> tuple[np.ndarray, np.ndarray]:
    """``point ± q·(sd + floor)`` clipped to [0, 1]."""
    half = q * (np.asarray(sd, dtype=np.float64) + floor)
    p = np.asarray(point, dtype=np.float64)
    return np.clip(p - half, 0.0, 1.0), np.clip(p + half, 0.0, 1.0)


@dataclass
class Calibration:
    """Normalised residuals of calibration trials and the floor they were computed with."""

    floor: float
    scores: list[float]
    source: str = ""  # how the scores were obtained (settings, seeds, trials, replicates)
    extra: dict = field(default_factory=dict)
    #: the scores of each group of calibration trials (q: the largest of the groups' quantiles)
    group_scores: dict[str, list[float]] = field(default_factory=dict)

    def q(self, confidence: float) -> float:
        if self.group_scores:
            return max(self.q_by_group(confidence).values())
        return conformal_quantile(self.scores, confidence)

    def q_by_group(self, confidence: float) -> dict[str, float]:
        return {k: conformal_quantile(g, confidence) for k, g in self.group_scores.items()}

    def bounds(self, point, sd, confidence: float) -> tuple[np.ndarray, np.ndarray]:
        return calibrated_bounds(point, sd, self.q(confidence), self.floor)

    def describe(self, confidence: float) -> str:
        groups = ""
        if self.group_scores:
            each = ", ".join(f"{k} {v:.2f}" for k, v in self.q_by_group(confidence).items())
            groups = f", the largest of the groups' ({each})"
        return (
            f"split-conformal calibration on {len(self.scores)} (trial, category) residuals of "
            f"controlled experiments ({self.source}): estimate ± q·(bootstrap sd + {self.floor:g}), "
            f"q = {self.q(confidence):.2f} for {100 * confidence:g}%{groups}"
        )

    def to_dict(self) -> dict:
        d = {
            "method": "split conformal: |estimate - truth| / (bootstrap sd + floor)"
            + ("; q = the largest of the groups' quantiles" if self.group_scores else ""),
            "floor": self.floor,
            "scores": sorted(float(x) for x in self.scores),
            "source": self.source,
            **self.extra,
        }
        if self.group_scores:
            d["group_scores"] = {
                k: sorted(float(x) for x in v) for k, v in self.group_scores.items()
            }
        return d

    def save(self, path: str | Path = CALIBRATION_PATH) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")


def load_calibration(path: str | Path | None = None) -> Calibration | None:
    """The stored calibration (``None`` when there is none)."""
    p = Path(path) if path is not None else CALIBRATION_PATH
    if not p.exists():
        return None
    d = json.loads(p.read_text(encoding="utf-8"))
    own = ("method", "floor", "scores", "source", "group_scores")
    extra = {k: v for k, v in d.items() if k not in own}
    groups = {k: [float(x) for x in v] for k, v in d.get("group_scores", {}).items()}
    return Calibration(
        float(d["floor"]), [float(x) for x in d["scores"]], d["source"], extra, groups
    )


def fit_calibration(
    estimates: Sequence[float],
    sds: Sequence[float],
    truths: Sequence[float],
    confidence: float = 0.9,
    *,
    floors: Sequence[float] = FLOORS,
    source: str = "",
    groups: Sequence[str] | None = None,
) -> Calibration:
    """The calibration of (estimate, bootstrap sd, truth) triples of calibration trials.

    For each floor of ``floors`` the scores give q at ``confidence`` (with ``groups``, a label
    per triple: the largest of the groups' own quantiles); the floor kept is the one whose
    intervals are narrowest on average over these triples (the coverage on them, in every
    group, is ≥ ``confidence`` by construction for every floor; measure it on other trials).
    """
    e, s, t = (np.asarray(x, dtype=np.float64) for x in (estimates, sds, truths))
    if not len(e) == len(s) == len(t) or len(e) == 0:
        raise ValueError("estimates, sds and truths must be non-empty and of equal length")
    labels = np.asarray(list(groups) if groups is not None else [""] * len(e), dtype=object)
    if len(labels) != len(e):
        raise ValueError("groups must give one label per (estimate, sd, truth) triple")
    names = list(dict.fromkeys(labels.tolist()))
    best: tuple[float, Calibration] | None = None
    widths = {}
    for f in floors:
        if f == 0 and np.any(s <= 0):
            continue
        sc = np.abs(e - t) / (s + f)
        by_group = {g: sc[labels == g].tolist() for g in names} if groups is not None else {}
        cand = Calibration(f, sc.tolist(), source, group_scores=by_group)
        lo, hi = cand.bounds(e, s, confidence)
        width = float(np.mean(hi - lo))
        widths[str(f)] = width
        if best is None or width < best[0]:
            best = (width, cand)
    if best is None:
        raise ValueError("no floor gives finite scores")
    width, cal = best
    cal.extra.update(
        fit_confidence=confidence,
        mean_width=width,
        mean_width_by_floor=widths,
        q=cal.q(confidence),
        pairs=len(cal.scores),
    )
    if cal.group_scores:
        cal.extra["q_by_group"] = cal.q_by_group(confidence)
    return cal
