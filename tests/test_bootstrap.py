"""Block bootstrap: linear recombination of block events, intervals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from forensics.bootstrap import BlockEvents, DocumentBlocks, bootstrap_mixture
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
