"""The mixture LP: exact on the training text itself, accurate on disjoint halves, and the
same optimum through every solver path."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from forensics.categories import sample_text, split_documents
from forensics.counting import (
    BPEModel,
    TokenHistories,
    build_trajectories,
    category_events,
)
from forensics.infer import count_texts
from forensics.lp import MixtureLP, solve_mixture
from forensics.pretokenize import Pretokenizer
from forensics.tokenizer_io import load_merge_list
from forensics.training import mixture_sample, train_bpe
from pipeline.readers import ReadErrors


def _docs(shared_dir, cat: str, limit: int) -> list[str]:
    errors = ReadErrors()
    docs = sample_text(
        str(shared_dir / "corpus" / f"{cat}.jsonl.gz"), sample_bytes=limit, errors=errors
    )
    assert not errors.has_file_errors, errors.warnings()
    return docs


def controlled(
    shared_dir, tmp_path, cats, seed, per_cat_bytes, *, disjoint, n_merges=None, vocab=30000
):
    """Train a byte-level BPE on a known mixture; return trajectories of the attack text."""
    rng = np.random.default_rng(seed)
    weights = dict(zip(cats, rng.dirichlet(np.ones(len(cats))), strict=True))
    train, attack = {}, {}
    for c in cats:
        docs = _docs(shared_dir, c, 2 * per_cat_bytes if disjoint else per_cat_bytes)
        train[c], attack[c] = split_documents(docs, 0.5, seed=seed) if disjoint else (docs, docs)
    texts, used = mixture_sample(train, weights, total_bytes=per_cat_bytes * len(cats) // 2)
    if not disjoint:  # attack with exactly the text the tokenizer was trained on
        attack = {}
        for c in cats:
            attack[c], _ = mixture_sample({c: train[c]}, {c: 1.0}, total_bytes=used[c])
    path = tmp_path / f"tok{seed}.json"
    path.write_text(train_bpe(texts, vocab), encoding="utf-8")
    ml = load_merge_list(str(path))
    T = n_merges or len(ml.merges)
    model = BPEModel(ml.merges[:T], ml.base, ml.alphabet)
    pre = Pretokenizer.from_spec(ml.pretokenizer)
    hist = TokenHistories(model)
    events = []
    for c in cats:
        events.append(category_events(model, count_texts(model, pre, attack[c]), hist))
    tr = build_trajectories(model, cats, events, T)
    total = sum(used.values())
    truth = np.array([used[c] / total for c in cats])
    return tr, truth


def log10_mse(a, b) -> float:
    return float(np.log10(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def test_oracle_same_text_is_exact(shared_dir, tmp_path):
    cats = ["en", "ko", "code-python", "de", "ja"]
    tr, truth = controlled(shared_dir, tmp_path, cats, 11, 400_000, disjoint=False, vocab=8000)
    # every merge is the argmax of the true mixture's counts: with α ∝ P_i (pair units of the
    # training text itself) and no slack, a full scan finds no violated (step, pair)
    lp = MixtureLP(tr)
    alpha_true = tr.total_pairs / tr.total_pairs.sum()
    steps, _, viol = lp.scan(alpha_true, np.zeros(tr.n_steps), np.zeros(len(tr.pairs)), 1e-6)
    assert len(steps) == 0, f"{len(steps)} merges are not the argmax, worst {viol.max()}"
    res = solve_mixture(tr)
    assert res.optimal
    assert res.objective == pytest.approx(0.0, abs=1e-6)
    assert log10_mse(res.alpha_bytes, truth) <= -8
    assert res.alpha_bytes.sum() == pytest.approx(1.0)


def test_disjoint_halves_median_accuracy(shared_dir, tmp_path):
    """n = 5 languages/code, ≈ 1 MB each, train on one half of the documents, attack with the
    other, first 2,000 merges: median log10 MSE over 3 mixtures (measured: −4.5; see README)."""
    cats = ["en", "ko", "ja", "ru", "code-python"]
    scores = []
    for seed in (0, 1, 3):
        tr, truth = controlled(
            shared_dir, tmp_path, cats, seed, 1_000_000, disjoint=True, n_merges=2000
        )
        res = solve_mixture(tr)
        assert res.optimal
        scores.append(log10_mse(res.alpha_bytes, truth))
    print("disjoint halves log10 MSE:", [round(s, 2) for s in scores])
    assert np.median(scores) <= -4.0, scores


@pytest.fixture(scope="module")
def small_instance(shared_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lp")
    return controlled(
        shared_dir, tmp, ["en", "de", "code-c"], 5, 200_000, disjoint=True, n_merges=300, vocab=2000
    )


def test_kelley_reaches_the_same_optimum(small_instance):
    tr, _ = small_instance
    rows = solve_mixture(tr, method="rows")
    kel = solve_mixture(tr, method="kelley")
    assert rows.optimal and kel.optimal
    assert kel.objective == pytest.approx(rows.objective, rel=1e-5)
    # the objective is flat in places; compare objective values, and α where it is unique
    assert np.abs(kel.alpha_pairs - rows.alpha_pairs).max() < 0.05


@pytest.fixture(scope="module")
def tiny_instance(shared_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lp")
    return controlled(
        shared_dir, tmp, ["en", "de", "code-c"], 5, 100_000, disjoint=True, n_merges=60, vocab=600
    )


@pytest.mark.parametrize("solver", ["pulp-highs", "pulp-cbc"])
def test_pulp_solvers_agree_with_highspy(tiny_instance, solver):
    tr, _ = tiny_instance
    ref = solve_mixture(tr)
    got = solve_mixture(tr, solver=solver, max_rows_per_round=50000)
    assert got.optimal
    assert got.objective == pytest.approx(ref.objective, rel=1e-4, abs=1e-3)


def test_category_with_zero_pairs_is_an_error(small_instance):
    tr, _ = small_instance
    totals = tr.total_pairs.copy()
    totals[1] = 0
    with pytest.raises(ValueError, match="zero pairs"):
        MixtureLP(dataclasses.replace(tr, total_pairs=totals))


def test_tree_formulation_reaches_the_same_optimum(small_instance):
    tr, _ = small_instance
    rows = solve_mixture(tr, method="rows")
    tree = solve_mixture(tr, method="tree")
    assert rows.optimal and tree.optimal
    assert tree.objective == pytest.approx(rows.objective, rel=1e-6)
    # certificate: a full scan of every (step, pair) at each solution finds no violation
    lp = MixtureLP(tr)
    for res in (rows, tree):
        steps, _, _ = lp.scan(res.alpha_pairs, res.step_slack, res.pair_slack, 1e-5)
        assert len(steps) == 0
        assert res.step_slack.sum() + res.pair_slack.sum() == pytest.approx(res.objective, rel=1e-6)


def test_auto_method_is_tree_with_highs_and_rows_with_pulp(small_instance):
    tr, _ = small_instance
    assert solve_mixture(tr).solver == "highs-tree"
    assert solve_mixture(tr, solver="pulp-highs").solver == "pulp-highs"


def test_after_k_constrains_only_the_later_merges(small_instance):
    tr, _ = small_instance
    K = 120
    lp = MixtureLP(tr, after=K)
    assert not lp.present[:K].any() and lp.present[K:].any()
    assert np.all(lp.seg_lo[lp.seg_ok] > K)
    res = solve_mixture(tr, after=K)
    assert res.optimal and res.after == K
    assert res.step_slack[:K].sum() == 0.0
    # certificate on the restricted LP, and the restricted optimum is no worse than the full one
    steps, _, _ = lp.scan(res.alpha_pairs, res.step_slack, res.pair_slack, 1e-5)
    assert len(steps) == 0
    full = solve_mixture(tr)
    assert res.objective <= full.objective + 1e-6
    assert 0.0 <= res.violated_share <= 1.0
    with pytest.raises(ValueError, match="after"):
        MixtureLP(tr, after=tr.n_steps)
