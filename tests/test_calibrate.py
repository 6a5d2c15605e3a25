"""The Korean thresholds in pipeline/configs/default.yaml follow the rule pipeline/README.md
states: on ../shared/corpus/ko.jsonl.gz, a lower bound sits at or below the signal's 1st
percentile and an upper bound at or above its 99th, rounded outward by a little."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ko_stats(shared_dir):
    from pipeline.calibrate import document_stats
    from pipeline.normalize import Normalize

    with gzip.open(shared_dir / "corpus" / "ko.jsonl.gz", "rt", encoding="utf-8") as fh:
        texts = [json.loads(line)["text"] for line in fh]
    texts = [t for t in texts if t.strip()]
    t = pa.table({"text": texts, "n_bytes": [0] * len(texts)})
    return document_stats(Normalize().modify(t)["text"].to_pylist())


def _ko(stage: str) -> dict:
    from pipeline.config import load_config

    stages = load_config()["stages"]
    return stages[stage] if stage == "korean" else stages[stage]["ko"]


def test_korean_thresholds_follow_the_documented_rule(ko_stats):
    q = {k: (np.quantile(v, 0.01), np.quantile(v, 0.99)) for k, v in ko_stats.items()}
    fw, rep, gq = _ko("fineweb_quality"), _ko("gopher_repetition"), _ko("gopher_quality")
    lower = [  # (threshold, signal): threshold <= q01
        (_ko("korean")["min_hangul_share"], "hangul_share"),
        (gq["min_doc_words"], "n_words"),
        (gq["min_avg_word_length"], "mean_word_len_lo"),
        (fw["line_punct_thr"], "line_punct_ratio"),
    ]
    upper = [  # (threshold, signal): threshold >= q99
        (gq["max_avg_word_length"], "mean_word_len_hi"),
        (fw["short_line_thr"], "short_line_ratio(<=10)"),
        (fw["char_duplicates_ratio"], "dup_line_char_ratio"),
        (fw["new_line_ratio"], "newline_per_word"),
        (rep["dup_line_frac"], "dup_line_frac"),
        (rep["dup_line_char_frac"], "dup_line_char_frac"),
    ]
    upper += [(thr, f"top_{n}_gram") for n, thr in rep["top_n_grams"]]
    upper += [(thr, f"dup_{n}_gram") for n, thr in rep["dup_n_grams"] if f"dup_{n}_gram" in q]
    assert fw["short_line_length"] == 10  # the signal above counts lines of <= 10 characters
    for thr, name in lower:
        q01 = q[name][0]
        assert 0.75 * q01 <= thr <= q01, f"{name}: threshold {thr} vs q01 {q01:.3f}"
    for thr, name in upper:
        q99 = q[name][1]
        assert q99 <= thr <= 1.25 * q99 + 0.01, f"{name}: threshold {thr} vs q99 {q99:.3f}"


def test_calibrate_prints_every_signal(capsys):
    from pipeline.calibrate import SIGNALS, main

    assert main([str(ROOT / "data" / "sample" / "ko.jsonl.gz"), "--limit", "60"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("60 documents")
    for name, direction in SIGNALS:
        line = next(ln for ln in out.splitlines() if ln.startswith(name + " "))
        assert line.split()[-2] == direction
        assert len(line.split()) == 1 + 7 + 2  # name, 7 quantiles, direction and suggestion
