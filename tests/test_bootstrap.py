"""Block bootstrap: linear recombination of block events, intervals."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from forensics.bootstrap import (
    BlockEvents,
    DocumentBlocks,
    bootstrap_mixture,
    calibrated_bounds,
    conformal_quantile,
    fit_calibration,
    load_calibration,
)
from forensics.categories import sample_text
from forensics.counting import BPEModel, TokenHistories, category_events
from forensics.pretokenize import Pretokenizer
from forensics.tokenizer_io import load_merge_list
from forensics.training import train_bpe
from pipeline.readers import ReadErrors

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    docs = {
        c: sample_text(str(SAMPLE / f"{c}.jsonl.gz"), sample_bytes=60_000, errors=ReadErrors())
        for c in ("en", "ko", "code-c")
    }
    path = tmp_path_factory.mktemp("boot") / "tok.json"
    path.write_text(train_bpe([d for v in docs.values() for d in v], 900), encoding="utf-8")
    ml = load_merge_list(str(path))
    model = BPEModel(ml.merges, ml.base, ml.alphabet)
    pre = Pretokenizer.from_spec(ml.pretokenizer)
    blocks = {c: DocumentBlocks.count(model, pre, d, n_blocks=8) for c, d in docs.items()}
    return model, TokenHistories(model), blocks


def test_block_events_combine_equals_recounting(setup):
    model, hist, blocks = setup
    be = BlockEvents(model, hist, blocks["en"])
    rng = np.random.default_rng(3)
    for _ in range(3):
        w = rng.multinomial(len(blocks["en"]), np.full(len(blocks["en"]), 1 / len(blocks["en"])))
        got = be.combine(w)
        want = category_events(model, blocks["en"].resample(w), hist)
        assert np.array_equal(got.keys, want.keys) and np.array_equal(got.steps, want.steps)
        assert np.array_equal(got.deltas, want.deltas)
        assert (got.total_pairs, got.n_bytes) == (want.total_pairs, want.n_bytes)
    # all weights 1: the category's own events
    full = category_events(model, blocks["en"].total(), hist)
    ones = be.combine(np.ones(len(blocks["en"]), dtype=np.int64))
    assert np.array_equal(ones.deltas, full.deltas) and ones.total_pairs == full.total_pairs


def test_bootstrap_intervals(setup):
    model, hist, blocks = setup
    names = list(blocks)
    args = (model, hist, [blocks[c] for c in names], names, 400, 6)
    pct = bootstrap_mixture(*args, seed=1)
    assert pct.samples.shape == (6, 3)
    assert np.allclose(pct.samples.sum(axis=1), 1.0)
    assert np.all(pct.lower <= pct.upper) and pct.blocks == [len(blocks[c]) for c in names]
    point = pct.samples.mean(axis=0)
    nrm = bootstrap_mixture(*args, seed=1, point=point, confidence=0.8)
    assert np.array_equal(nrm.samples, pct.samples)  # same seed, same replicates
    assert np.all(nrm.lower <= point) and np.all(point <= nrm.upper)
    assert np.allclose((nrm.upper + nrm.lower)[nrm.lower > 0] / 2, point[nrm.lower > 0])
    with pytest.raises(ValueError, match="replicates"):
        bootstrap_mixture(model, hist, [blocks[c] for c in names], names, 400, 1)


def test_conformal_quantile():
    scores = [5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0]  # m = 9
    assert conformal_quantile(scores, 0.9) == 9.0  # ceil(10 * 0.9) = 9th smallest
    assert conformal_quantile(scores, 0.5) == 5.0  # ceil(10 * 0.5) = 5th
    assert conformal_quantile(scores[:5], 0.9) == math.inf  # ceil(6 * 0.9) = 6 > 5
    with pytest.raises(ValueError, match="confidence"):
        conformal_quantile(scores, 1.0)


def test_calibrated_bounds_clip_to_the_unit_interval():
    lo, hi = calibrated_bounds(np.array([0.01, 0.5, 0.99]), np.array([0.01, 0.0, 0.02]), 2.0, 0.0)
    assert lo == pytest.approx([0.0, 0.5, 0.95]) and hi == pytest.approx([0.03, 0.5, 1.0])


def test_calibration_covers_held_out_pairs_where_the_raw_interval_does_not(tmp_path):
    # the bootstrap sd sees only part of the error: the truth is off by 3 sd plus a constant
    # noise the sd does not see at all; the calibration must restore 90 % on fresh pairs
    rng = np.random.default_rng(0)

    def pairs(m):
        sd = rng.uniform(0.001, 0.01, m)
        est = rng.uniform(0.05, 0.6, m)
        truth = est + rng.normal(0.0, 3 * sd + 0.004)
        return est, sd, truth

    e, s, t = pairs(400)
    cal = fit_calibration(e, s, t, 0.9, source="synthetic")
    assert cal.floor > 0  # the error has a part independent of sd: a floor narrows the intervals
    e2, s2, t2 = pairs(4000)
    lo, hi = cal.bounds(e2, s2, 0.9)
    cov = np.mean((lo <= t2) & (t2 <= hi))
    raw = np.mean(np.abs(e2 - t2) <= 1.645 * s2)
    assert 0.87 <= cov <= 0.93, cov
    assert raw < 0.6, raw
    # stored and read back: same floor, scores and q
    cal.save(tmp_path / "c.json")
    back = load_calibration(tmp_path / "c.json")
    assert back.floor == cal.floor and back.q(0.9) == pytest.approx(cal.q(0.9))
    assert "synthetic" in back.describe(0.9) and "q = " in back.describe(0.9)
    assert load_calibration(tmp_path / "missing.json") is None
    with pytest.raises(ValueError, match="equal length"):
        fit_calibration([0.1], [0.01, 0.02], [0.1])


def test_group_calibration_covers_each_group_where_a_pooled_one_does_not(tmp_path):
    # two settings whose residuals are 1 and 3 bootstrap sds: a pooled quantile lands between
    # them and under-covers the noisier one; the group calibration takes the larger quantile
    rng = np.random.default_rng(1)

    def pairs(m, k):
        sd = rng.uniform(0.002, 0.02, m)
        est = rng.uniform(0.05, 0.6, m)
        return est, sd, est + rng.normal(0.0, k * sd)

    cal_sets = {"calm": pairs(300, 1.0), "noisy": pairs(100, 3.0)}
    e, s, t = (np.concatenate([v[j] for v in cal_sets.values()]) for j in range(3))
    labels = ["calm"] * 300 + ["noisy"] * 100
    pooled = fit_calibration(e, s, t, 0.9, floors=(0.0,))
    grouped = fit_calibration(e, s, t, 0.9, floors=(0.0,), groups=labels)
    qs = grouped.q_by_group(0.9)
    assert qs["noisy"] > 2 * qs["calm"] and grouped.q(0.9) == qs["noisy"]
    assert grouped.q(0.9) > pooled.q(0.9)
    fresh = pairs(4000, 3.0)  # new trials of the noisy setting
    for cal, lo_cov, hi_cov in ((pooled, 0.0, 0.85), (grouped, 0.87, 0.95)):
        lo, hi = cal.bounds(fresh[0], fresh[1], 0.9)
        cov = np.mean((lo <= fresh[2]) & (fresh[2] <= hi))
        assert lo_cov <= cov <= hi_cov, (cal.group_scores.keys(), cov)
    grouped.save(tmp_path / "g.json")
    back = load_calibration(tmp_path / "g.json")
    assert back.q(0.9) == pytest.approx(grouped.q(0.9)) and set(back.group_scores) == set(qs)
    assert "noisy" in back.describe(0.9)
    with pytest.raises(ValueError, match="one label per"):
        fit_calibration(e, s, t, 0.9, groups=labels[:-1])
