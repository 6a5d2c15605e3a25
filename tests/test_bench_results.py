"""The text that bench/results.py derives from saved trials: curves and per-category errors."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def results():
    spec = importlib.util.spec_from_file_location("bench_results", ROOT / "bench" / "results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _curve_rows(at_1mb: float) -> dict:
    """Two trials whose attacker-data medians are −2.6, −3.1, at_1mb at 0.25, 0.5, 1 MB."""
    rec = []
    for shift in (-0.1, 0.1):
        pts = {"250000": -2.6 + shift, "500000": -3.1 + shift, "1000000": at_1mb + shift}
        rec.append({"T": 4000, "curves": {"merges": {"1000": -3.0}, "attack_bytes": pts}})
    return {"code-5-curves": {"description": "code curves", "records": rec}}


def test_curve_extrapolation_follows_the_last_two_doublings(results):
    text = "\n".join(results.curve_lines(_curve_rows(-3.6)))
    assert "0.25: −2.60, 0.5: −3.10, 1: −3.60" in text
    # slope −0.5 per doubling from −3.6 at 1 MB: −4.5 at 2 ** 1.8 = 3.5 MB
    assert "moved the median by −0.50" in text
    assert "≈ 3.5 MB of attacker text per category" in text


def test_no_extrapolation_when_the_curve_already_reaches_the_target(results):
    text = "\n".join(results.curve_lines(_curve_rows(-4.7)))
    assert "1: −4.70" in text
    assert "extrapolation" not in text


def test_effective_documents_per_mb(results, tmp_path):
    path = tmp_path / "c.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for n in (1000, 1000, 4000):
            f.write(json.dumps({"text": "a" * n}) + "\n")
    # (Σ b)² / Σ b² = 36e6 / 18e6 = 2 documents in 6,000 bytes: 333 per MB
    got = results.effective_documents_per_mb([str(path)], 10_000)
    assert got == pytest.approx(2 / 6000 * 1e6)
    # only what a trial reads counts: the first two documents
    assert results.effective_documents_per_mb([str(path)], 2000) == pytest.approx(1000)


def test_category_lines_rms_bias_and_documents(results, tmp_path, monkeypatch):
    for c, sizes in (("a", (500, 500)), ("b", (1000,))):
        with gzip.open(tmp_path / f"{c}.jsonl.gz", "wt", encoding="utf-8") as f:
            for n in sizes:
                f.write(json.dumps({"text": "x" * n}) + "\n")
    monkeypatch.setattr(results, "CORPUS", tmp_path)
    config = {"n": 2, "bytes_per_category": 1000}
    rec = [
        {
            "categories": ["a", "b"],
            "truth": [0.5, 0.5],
            "estimates": {"attack": [0.5 + d, 0.5 - d]},
            "interval": {"sd": [0.01, 0.02]},
            "withheld": [],
            "config": config,
        }
        for d in (0.03, -0.01)
    ]
    lines = results.category_lines({"code-5": {"records": rec}})
    # a: errors +3, −1 points: rms √5 = 2.24, bias +1; two documents of 500 bytes: 2,000 per MB
    assert "| code-5 | a | 2 | 2.24 | 1.00 | 1.00 | 2000 |" in lines
    assert "| code-5 | b | 2 | 2.24 | −1.00 | 2.00 | 1000 |" in lines
    # a setting without bootstrap trials is not listed
    assert results.category_lines({"mixed-5": {"records": rec}}) == []


def test_from_saved_row_counts_appended_trials_and_lists_its_files(results, tmp_path):
    """After --append, the saved records keep their own runs' configs (trials 1, then 2); the
    row rebuilt from them reports the configuration that reproduces all of them."""

    def record(trial: int, run_trials: int) -> dict:
        return {
            "trial": trial,
            "categories": ["a", "b"],
            "withheld": [],
            "truth": [0.5, 0.5],
            "estimates": {"attack": [0.49, 0.51]},
            "log10_mse": {"attack": -4.0},
            "interval": None,
            "lp": {"violated_share": 0.1},
            "config": {"n": 2, "trials": run_trials, "seed": 0},
        }

    (tmp_path / "mixed-5").mkdir()
    saved = [record(0, 1), record(1, 2)]
    (tmp_path / "mixed-5" / "trials.json").write_text(json.dumps(saved), encoding="utf-8")
    row = results.load_setting("mixed-5", tmp_path, None)
    assert row["config"] == {"n": 2, "trials": 2, "seed": 0}
    assert row["summary"]["trials"] == 2
    assert row["paths"]["json"] == str(
        Path(os.path.relpath(tmp_path / "mixed-5" / "trials.json", results.ROOT))
    )
    assert set(row["paths"]) == {"parquet", "json", "summary", "mse_plot", "scatter_plot"}


def _grid_rows(a: float, b: float) -> dict:
    """Grid and code-5 records whose MSE is exactly a / attacker MB + b / training MB, with a
    per-trial factor so that trials differ (the factor is shared across cells of a trial)."""
    rows = {}
    for name, train in (("code-5-grid-0.25", 0.25), ("code-5-grid-0.5", 0.5)):
        rec = []
        for f in (0.5, 1.0, 2.0):
            curve = {
                str(x): float(np.log10(f * (a / (x / 1e6) + b / train)))
                for x in (250_000, 500_000, 1_000_000, 2_000_000)
            }
            cfg = {"n": 5, "train_bytes": 5 * train * 1e6, "bytes_per_category": 2_000_000}
            rec.append(
                {"true_bytes": [train * 1e6] * 5, "curves": {"attack_bytes": curve}, "config": cfg}
            )
        rows[name] = {"records": rec}
    rows["code-5"] = {
        "records": [
            {
                "true_bytes": [0.9e6] * 5,
                "config": {"bytes_per_category": 1_000_000},
                "log10_mse": {"attack": float(np.log10(f * (a + b / 0.9)))},
            }
            for f in (0.5, 1.0, 2.0)
        ]
    }
    return rows


def test_grid_lines_pair_trials(results):
    text = "\n".join(results.grid_lines(_grid_rows(6e-4, 8e-5)))
    # doubling the attacker's text: log10((a/2 + b/t) / (a + b/t)) for t = 0.25
    d = np.log10((3e-4 + 8e-5 / 0.25) / (6e-4 + 8e-5 / 0.25))
    assert f"moved log10 MSE by {d:.2f}".replace("-", "−") in text
    assert "better in 3 of 3" in text
    assert "| code-5 | 0.90 | 3 |" in text
    assert "attacker 2 MB per category" in text and "n × 0.25 or n × 0.5 MB" in text
    # more training text at 2 MB of attacker text: log10((a/2 + b/0.5) / (a/2 + b/0.25))
    d = np.log10((3e-4 + 8e-5 / 0.5) / (3e-4 + 8e-5 / 0.25))
    assert f"2 MB of attacker text, training 0.25 → 0.50 MB: {d:.2f}".replace("-", "−") in text


def _ext_rows(medians: dict[str, tuple[float, float]]) -> dict:
    """Rows whose summaries give each setting's (attack, tc) medians."""
    return {
        name: {"summary": {"methods": {"attack": {"median": a}, "tc": {"median": tc}}}}
        for name, (a, tc) in medians.items()
    }


def test_extension_lines_compare_the_extensions_with_their_controls_and_tc(results):
    rows = _ext_rows(
        {
            "languages-5-extension": (-1.76, -1.92),
            "languages-5-late": (-3.02, -2.09),
            "languages-5-extension-2000": (-2.35, -2.57),
            "languages-5-late-5000": (-4.15, -2.20),
        }
    )
    text = "\n".join(results.extension_lines(rows))
    assert "give −3.02 after 7,744 merges and −4.15 after 1,744" in text
    assert "−1.76 on a base of 8,000 and −2.35 on a base of 2,000" in text
    assert "its control reaches −4.15" in text
    assert "TC baseline does as well or better here (median −1.92 and −2.57)" in text
    # the verdict follows the figures: an attack better than TC on both says so
    rows["languages-5-extension"]["summary"]["methods"]["tc"]["median"] = -1.5
    rows["languages-5-extension-2000"]["summary"]["methods"]["tc"]["median"] = -2.0
    assert "TC baseline does worse here" in "\n".join(results.extension_lines(rows))
    # without the smaller base's rows there is nothing to compare
    del rows["languages-5-late-5000"]
    assert results.extension_lines(rows) == []


def test_mse_ratio_keeps_two_digits_below_ten(results):
    assert results.times(1153.4) == "1,153×"
    assert results.times(9.04) == "9×"
    assert results.times(3.18) == "3.2×"
    assert results.times(0.69) == "0.69×"  # a baseline better than the attack


def test_noise_floor_verdict_follows_the_gap(results):
    def row(attack: float) -> dict:
        # every category's bootstrap sd 0.01: log10 of the mean variance = −4
        rec = {"categories": ["a", "b"], "interval": {"sd": [0.01, 0.01]}}
        return {
            "description": f"attack {attack}",
            "records": [rec],
            "summary": {"methods": {"attack": {"median": attack}}},
        }

    same, far = results.noise_floor_lines({"x": row(-3.8), "y": row(-2.0)})
    assert "log10 −4.00" in same and "the same order" in same
    assert "2.00 above it in log10" in far and "too narrow" in far
