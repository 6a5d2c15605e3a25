"""Mixture inference end to end: CLI, Ray counting, sample budgets, demo accuracy, bad input."""

from __future__ import annotations

import gzip
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from forensics.bootstrap import Calibration
from forensics.categories import shard_plan
from forensics.counting import BPEModel, merge_category_counts
from forensics.demo import run_demo
from forensics.infer import (
    ForensicsInputError,
    count_shard,
    infer_mixture,
    load_target,
)
from forensics.pretokenize import Pretokenizer
from forensics.training import mixture_sample, train_bpe
from jobs.cli import app

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
GPT2_CATEGORIES = ["en", "de", "fr", "ja", "code-python", "code-c"]

runner = CliRunner()


def _yaml(path: Path, mapping: dict[str, str]) -> Path:
    path.write_text("".join(f"{k}: {json.dumps(str(v))}\n" for k, v in mapping.items()))
    return path


def _jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts))
    return path


@pytest.fixture(scope="module")
def small_tokenizer(tmp_path_factory) -> Path:
    """A byte-level BPE (~500 merges) trained on an even mix of three sample categories."""
    from forensics.categories import load_categories, sample_text
    from pipeline.readers import ReadErrors

    cats = load_categories(str(SAMPLE))
    docs = {
        c: sample_text(cats[c], sample_bytes=40_000, errors=ReadErrors())
        for c in ("en", "de", "code-c")
    }
    texts, _ = mixture_sample(docs, {"en": 1, "de": 1, "code-c": 1}, 120_000)
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    path.write_text(train_bpe(texts, 800), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------------------
# GPT-2 end to end through the CLI
# ----------------------------------------------------------------------------------------------


def test_gpt2_cli_end_to_end(ray_session, shared_dir, tmp_path):
    cats = _yaml(
        tmp_path / "cats.yaml",
        {c: shared_dir / "corpus" / f"{c}.jsonl.gz" for c in GPT2_CATEGORIES},
    )
    out_json, out_png = tmp_path / "out" / "gpt2.json", tmp_path / "gpt2.png"
    t0 = time.perf_counter()
    res = runner.invoke(
        app,
        [
            "infer",
            str(shared_dir / "tokenizers" / "gpt2"),
            "--categories",
            str(cats),
            "--sample-bytes",
            "300000",
            "--merges",
            "1000",
            "--json",
            str(out_json),
            "--plot",
            str(out_png),
            "--quiet",
        ],
    )
    elapsed = time.perf_counter() - t0
    assert res.exit_code == 0, res.output
    data = json.loads(out_json.read_text())
    for key in ("mixture", "mixture_pairs", "diagnostics", "tokenizer", "timings", "categories"):
        assert key in data
    mix = data["mixture"]
    assert set(mix) == set(GPT2_CATEGORIES)
    assert abs(sum(mix.values()) - 1) < 1e-9
    assert abs(sum(data["mixture_pairs"].values()) - 1) < 1e-9
    assert max(mix, key=mix.get) == "en", mix
    diag = data["diagnostics"]
    assert diag["T"] == 1000 and diag["solver"] == "highs-tree" and diag["rows"] > 0
    assert diag["optimal"] is True
    tok = data["tokenizer"]
    assert tok["n_merges"] == 50_000 and tok["T"] == 1000 and tok["format"] == "vocab+merges"
    assert tok["pretokenizer"] == "regex" and tok["line_mode"] is True
    for c in GPT2_CATEGORIES:
        st = data["categories"][c]
        assert 290_000 < st["bytes"] <= 300_000 and st["pairs"] > 0 and st["words"] > 0
    for phase in ("load", "count", "trajectories", "lp", "total"):
        assert phase in data["timings"]
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the table on stdout, sorted by share: English first
    lines = [ln for ln in res.stdout.splitlines() if any(c in ln for c in GPT2_CATEGORIES)]
    assert "en" in lines[0].split()[1:3] or lines[0].split("│")[1].strip() == "en"
    assert "optimal" in res.stdout
    print(f"GPT-2 end to end: {elapsed:.1f} s; timings {data['timings']}; mixture {mix}")


# ----------------------------------------------------------------------------------------------
# Controlled experiments: exact recovery on the training text, demo accuracy
# ----------------------------------------------------------------------------------------------


def test_exact_recovery_when_attacking_with_the_training_text(ray_session, tmp_path):
    """Counting the very text the tokenizer was trained on gives an LP with objective 0 and
    the true mixture: checks that lines, pretokens and merges match HF training exactly."""
    from forensics.categories import load_categories, sample_text
    from pipeline.readers import ReadErrors

    cats = load_categories(str(SAMPLE))
    names = ["en", "ko", "code-python", "fr"]
    docs = {c: sample_text(cats[c], sample_bytes=60_000, errors=ReadErrors()) for c in names}
    weights = dict(zip(names, [0.4, 0.3, 0.2, 0.1], strict=True))
    texts, true_bytes = mixture_sample(docs, weights, 120_000)
    (tmp_path / "tokenizer.json").write_text(train_bpe(texts, 900), encoding="utf-8")
    files, start = {}, 0
    for c in names:  # the documents of each category, in the order mixture_sample took them
        k = 0
        while sum(len(t.encode()) for t in texts[start : start + k]) < true_bytes[c]:
            k += 1
        files[c] = str(_jsonl(tmp_path / f"{c}.jsonl", texts[start : start + k]))
        start += k
    res = infer_mixture(str(tmp_path / "tokenizer.json"), files)
    total = sum(true_bytes.values())
    err = max(abs(res.mixture_bytes[c] - true_bytes[c] / total) for c in names)
    assert res.diagnostics.optimal and res.diagnostics.objective < 1e-6
    assert err < 1e-6, (res.mixture_bytes, true_bytes)
    assert {c: res.stats[c].bytes for c in names} == true_bytes
    # the extended-vocabulary attack (merges 301.. with the first 300 pre-applied) and the
    # bootstrap on the same text: still no slack; intervals around the estimate
    # an explicit calibration file: q = 2 (every score 2), floor 0.01
    cal_path = tmp_path / "calibration.json"
    Calibration(0.01, [2.0] * 20, "test").save(cal_path)
    ext = infer_mixture(
        str(tmp_path / "tokenizer.json"),
        files,
        after=300,
        bootstrap=3,
        seed=1,
        calibration=str(cal_path),
    )
    d = ext.diagnostics
    assert d.after == 300 and d.optimal and d.objective < 1e-6
    assert d.violated_share == pytest.approx(0.0, abs=1e-9)
    assert set(ext.intervals) == set(names) and ext.confidence == 0.9
    for c in names:
        iv = ext.intervals[c]
        assert iv["lower"] <= ext.mixture_bytes[c] <= iv["upper"] and iv["blocks"] >= 1
        half = 2.0 * (iv["std"] + 0.01)
        assert iv["upper"] == pytest.approx(min(1.0, ext.mixture_bytes[c] + half))
        assert iv["lower"] == pytest.approx(max(0.0, ext.mixture_bytes[c] - half))
        assert iv["raw_lower"] <= ext.mixture_bytes[c] <= iv["raw_upper"]
    assert "calibrated on controlled experiments" in ext.interval_method
    assert any(w.startswith("after = 300: on the merges an extension added") for w in ext.warnings)
    assert "q = 2.00" in ext.interval_method
    assert json.loads(ext.to_json())["intervals"]["en"]["std"] >= 0
    with pytest.raises(ForensicsInputError, match="after"):
        infer_mixture(str(tmp_path / "tokenizer.json"), files, after=10_000)
    with pytest.raises(ForensicsInputError, match="bootstrap"):
        infer_mixture(str(tmp_path / "tokenizer.json"), files, bootstrap=1)


def test_demo_cli_small(ray_session, tmp_path):
    out = tmp_path / "demo.json"
    t0 = time.perf_counter()
    res = runner.invoke(
        app,
        [
            "demo",
            "--no-pipeline",
            "--vocab-size",
            "1000",
            "--bytes-per-category",
            "50000",
            "--seed",
            "0",
            "--json",
            str(out),
            "--quiet",
        ],
    )
    elapsed = time.perf_counter() - t0
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["names"] == ["en", "ko", "ja", "code-python", "de"]
    assert abs(sum(data["truth"].values()) - 1) < 1e-9
    assert abs(sum(data["estimate"].values()) - 1) < 1e-9
    # measured: -4.65 for seed 0 (10 seeds: mean -3.41, worst -2.67; random guess -1.27)
    assert data["log10_mse"] <= -3.5, data
    assert "log10 MSE" in res.stdout
    print(
        f"demo (vocab 1000, 50 KB/category): log10 MSE {data['log10_mse']:.2f} in {elapsed:.1f} s"
    )


def test_demo_accuracy_over_seeds(ray_session):
    # measured with vocab 1000, 50 KB per category: seeds 1, 2 -> -3.62, -3.38
    scores = [
        run_demo(vocab_size=1000, bytes_per_category=50_000, seed=s).log10_mse for s in (1, 2)
    ]
    assert all(s <= -2.5 for s in scores), scores
    assert np.mean(scores) <= -3.0, scores


# ----------------------------------------------------------------------------------------------
# Sample budget across shards
# ----------------------------------------------------------------------------------------------


def _gz_jsonl(path: Path, texts: list[str]) -> Path:
    data = "".join(json.dumps({"text": t}) + "\n" for t in texts).encode()
    path.write_bytes(gzip.compress(data, mtime=0))
    return path


def test_sample_budget_over_shards_is_deterministic(ray_session, small_tokenizer, tmp_path):
    # very compressible files: the plan's size estimates (compressed size) are far too low,
    # so the plan asks for more shards than the budget needs
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    folder = tmp_path / "multi"
    folder.mkdir()
    for i in range(6):
        docs = [" ".join(rng.choice(words, size=200)) + "\n" for _ in range(20)]
        _gz_jsonl(folder / f"part-{i}.jsonl.gz", docs)
    other = _jsonl(tmp_path / "other.jsonl", ["hello world, some text.\n" * 50])
    sample_bytes, shard_bytes = 30_000, 12_000
    cats = {"multi": str(folder), "other": str(other)}
    plan = shard_plan(
        sorted(str(p) for p in folder.iterdir()),
        sample_bytes=sample_bytes,
        shard_bytes=shard_bytes,
        category="multi",
    )
    assert len(plan) == 6  # the low estimates plan every file
    runs = [
        infer_mixture(
            str(small_tokenizer), cats, sample_bytes=sample_bytes, shard_bytes=shard_bytes
        )
        for _ in range(2)
    ]
    st = runs[0].stats["multi"]
    assert sample_bytes <= st.bytes < sample_bytes + shard_bytes
    assert st.shards_used == 3 and st.shards_planned == 6
    assert runs[0].mixture_bytes == runs[1].mixture_bytes
    assert runs[0].stats == runs[1].stats
    # the kept counts are exactly those of the first shards, counted without Ray
    ml = load_target(str(small_tokenizer))
    model = BPEModel(ml.merges, ml.base, ml.alphabet)
    pt = Pretokenizer(ml.pretokenizer)
    parts = [count_shard(model, pt, s) for s in plan[: st.shards_used]]
    merged = merge_category_counts([p.counts for p in parts])
    assert merged.n_bytes == st.bytes and merged.n_words == st.words


def test_document_mode_counts_across_newlines(shared_dir, tmp_path):
    ml = load_target(str(shared_dir / "tokenizers" / "gpt2"))
    model = BPEModel(ml.merges[:1000], ml.base, ml.alphabet)
    pt = Pretokenizer(ml.pretokenizer)
    path = _jsonl(tmp_path / "d.jsonl", ["first line\n\nsecond line\n\n\nthird\n"])
    from forensics.categories import Shard

    shard = Shard("d", str(path), 10_000)
    lines = count_shard(model, pt, shard)
    docs = count_shard(model, pt, shard, document_mode=True)
    nl2 = model.id_of[b"\n\n"]
    assert nl2 not in set(lines.counts.uni_ids.tolist())  # lines end at each "\n"
    assert nl2 in set(docs.counts.uni_ids.tolist())
    assert lines.n_bytes == docs.n_bytes == len("first line\n\nsecond line\n\n\nthird\n")


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------


def _infer(tokenizer, categories, *extra):
    return runner.invoke(
        app, ["infer", str(tokenizer), "--categories", str(categories), "--quiet", *extra]
    )


def _one_line_error(res, *needles):
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    err = res.stderr.strip()
    assert err.startswith("error:") and "\n" not in err, err
    for n in needles:
        assert n in err, (n, err)


def test_missing_category_path(small_tokenizer, tmp_path):
    missing = tmp_path / "nowhere" / "de.jsonl.gz"
    cats = _yaml(tmp_path / "cats.yaml", {"en": SAMPLE / "en.jsonl.gz", "de": missing})
    _one_line_error(_infer(small_tokenizer, cats), str(missing), "de")
    _one_line_error(_infer(small_tokenizer, tmp_path / "no-such-dir"), "no-such-dir")
    with pytest.raises(ForensicsInputError, match="nowhere"):
        infer_mixture(str(small_tokenizer), {"en": str(missing)})


def test_empty_category_file(ray_session, small_tokenizer, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    cats = _yaml(tmp_path / "cats.yaml", {"en": SAMPLE / "en.jsonl.gz", "void": empty})
    _one_line_error(_infer(small_tokenizer, cats, "--sample-bytes", "20000"), "void", str(empty))


def test_invalid_utf8_is_a_warning(ray_session, small_tokenizer, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"Some English text \xff\xfe with bad bytes.\n" * 30 + b"end \xc3\n")
    cats = _yaml(
        tmp_path / "cats.yaml",
        {"en": SAMPLE / "en.jsonl.gz", "de": SAMPLE / "de.jsonl.gz", "bad": bad},
    )
    out = tmp_path / "r.json"
    res = _infer(small_tokenizer, cats, "--sample-bytes", "20000", "--json", str(out))
    assert res.exit_code == 0, res.output
    assert "warning" in res.stderr and str(bad) in res.stderr
    assert "61 invalid UTF-8 byte(s)" in res.stderr, res.stderr
    data = json.loads(out.read_text())
    assert data["categories"]["bad"]["invalid_utf8_bytes"] == 61
    assert abs(sum(data["mixture"].values()) - 1) < 1e-9


def test_hub_id_not_cached_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    res = _infer("some-org/not-cached-tokenizer", SAMPLE)
    _one_line_error(res, "some-org/not-cached-tokenizer", "HF_HUB_OFFLINE")


def test_wordpiece_tokenizer_is_refused(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(
        ["hello world"] * 10, trainers.WordPieceTrainer(vocab_size=50, show_progress=False)
    )
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    _one_line_error(_infer(path, SAMPLE), str(path), "WordPiece")


def test_merge_with_unknown_token_is_refused(tmp_path):
    tok = json.loads(train_bpe(["hello world hello there\n"] * 20, 270))
    merges = tok["model"]["merges"]
    merges.insert(2, ["Ġqq", "zz"] if isinstance(merges[0], list) else "Ġqq zz")
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(tok), encoding="utf-8")
    _one_line_error(_infer(path, SAMPLE), str(path), "never produced")


def test_unknown_solver_and_bad_pattern(small_tokenizer, tmp_path):
    res = _infer(small_tokenizer, SAMPLE, "--solver", "gurobi")
    assert res.exit_code == 2
    _one_line_error(_infer(small_tokenizer, SAMPLE, "--pattern", "(unclosed"), "pattern")


def test_version():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.startswith("mixtrace ")


# ----------------------------------------------------------------------------------------------
# Ray job entry point
# ----------------------------------------------------------------------------------------------


def test_job_entrypoint(ray_session, small_tokenizer, tmp_path):
    from jobs.infer import main

    out = tmp_path / "job" / "result.json"
    cfg = tmp_path / "job.yaml"
    cfg.write_text(
        f"tokenizer: {small_tokenizer}\n"
        f"categories:\n  en: {SAMPLE / 'en.jsonl.gz'}\n  code: {SAMPLE / 'code-c.jsonl.gz'}\n"
        f"sample_bytes: 30000\nmerges: 300\njson: {out}\nplot: {tmp_path / 'job.png'}\n"
    )
    assert main([str(cfg)]) == 0
    data = json.loads(out.read_text())
    assert set(data["mixture"]) == {"en", "code"} and data["diagnostics"]["T"] == 300
    assert (tmp_path / "job.png").stat().st_size > 0
    cfg.write_text(f"tokenizer: {small_tokenizer}\ncategories: {SAMPLE}\nsolvr: highs\n")
    assert main([str(cfg)]) == 2


def test_result_json_is_strict(ray_session, small_tokenizer):
    res = infer_mixture(
        str(small_tokenizer),
        {"en": str(SAMPLE / "en.jsonl.gz"), "de": str(SAMPLE / "de.jsonl.gz")},
        sample_bytes=20_000,
        n_merges=200,
    )
    data = json.loads(res.to_json())  # allow_nan=False: no NaN/Infinity in the output
    assert math.isclose(sum(data["mixture"].values()), 1.0, abs_tol=1e-9)
    assert all("alpha" not in h for h in data["diagnostics"]["history"])
    assert set(data["categories"]) == {"en", "de"}


def test_per_file_cap(ray_session, small_tokenizer, tmp_path):
    from forensics.infer import DEFAULT_SHARD_BYTES, shard_cap

    assert shard_cap(10**9, 1) == 10**9  # one big file: read the whole budget from it
    assert shard_cap(10**9, 100) == DEFAULT_SHARD_BYTES  # many files: parallel 64 MB tasks
    assert shard_cap(10**9, 100, 1000) == 1000
    one = _jsonl(tmp_path / "one.jsonl", [f"line {i} of some text\n" * 40 for i in range(30)])
    cats = {"one": str(one), "en": str(SAMPLE / "en.jsonl.gz")}
    res = infer_mixture(str(small_tokenizer), cats, sample_bytes=20_000, n_merges=200)
    assert 19_900 < res.stats["one"].bytes <= 20_000 and not res.warnings
    res = infer_mixture(
        str(small_tokenizer), cats, sample_bytes=20_000, n_merges=200, shard_bytes=5_000
    )
    assert 4_900 < res.stats["one"].bytes <= 5_000
    assert any("'one'" in w and "raise shard_bytes" in w for w in res.warnings), res.warnings


def test_merges_auto_chooses_T_from_the_data(ray_session, small_tokenizer):
    cats = {"en": str(SAMPLE / "en.jsonl.gz"), "de": str(SAMPLE / "de.jsonl.gz")}
    res = infer_mixture(str(small_tokenizer), cats, sample_bytes=15_000, n_merges="auto")
    n = res.tokenizer["n_merges"]
    # 15 KB per category: the late merges of this 544-merge list occur < 30 times in the samples
    assert 200 <= res.diagnostics.T < n and res.tokenizer["T"] == res.diagnostics.T
    bad = _infer(small_tokenizer, cats["en"], "--merges", "many")
    _one_line_error(bad, "--merges", "many")
