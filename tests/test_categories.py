"""Tests for forensics.categories: category specs, sampling, splits and shard plans."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
from pathlib import Path

import pytest

from forensics.categories import (
    CategoryError,
    Shard,
    ShardSample,
    cut_to_bytes,
    load_categories,
    merge_shard_samples,
    sample_shard,
    sample_text,
    shard_plan,
    split_documents,
)
from pipeline.readers import UNREADABLE, ReadErrors, iter_documents

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def _sample_categories() -> list[str]:
    """The category list of the script that made data/sample."""
    spec = importlib.util.spec_from_file_location("make_sample", SAMPLE.parent / "make_sample.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return list(mod.CATEGORIES)


NAMES = _sample_categories()


def write_jsonl_gz(path: Path, texts: list[str]) -> None:
    lines = [json.dumps({"id": f"{path.name}/{i}", "text": t}) for i, t in enumerate(texts)]
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode("utf-8")))


def nbytes(texts: list[str]) -> int:
    return sum(len(t.encode("utf-8")) for t in texts)


# ----------------------------------------------------------------------------- loading


def test_folder_of_sample_data():
    cats = load_categories(str(SAMPLE))
    assert sorted(cats) == sorted(NAMES)
    assert list(cats) == sorted(cats)  # deterministic order
    for name, urls in cats.items():
        assert urls == [str(SAMPLE / f"{name}.jsonl.gz")]


def test_yaml_spec_relative_glob_list_and_order(tmp_path):
    (tmp_path / "extra").mkdir()
    write_jsonl_gz(tmp_path / "extra" / "one.jsonl.gz", ["x"])
    write_jsonl_gz(tmp_path / "extra" / "two.jsonl.gz", ["y"])
    spec = tmp_path / "cats.yaml"
    spec.write_text(
        f"zh: {SAMPLE / 'zh.jsonl.gz'}\n"
        f"code: [{SAMPLE / 'code-go.jsonl.gz'}, '{SAMPLE}/code-ru*.jsonl.gz']\n"
        "mine: extra/*.jsonl.gz\n"
        "no: extra/one.jsonl.gz\n"
    )
    cats = load_categories(str(spec))
    assert list(cats) == ["zh", "code", "mine", "no"]  # YAML order; "no" stays a string
    assert cats["zh"] == [str(SAMPLE / "zh.jsonl.gz")]
    assert cats["code"] == [str(SAMPLE / "code-go.jsonl.gz"), str(SAMPLE / "code-rust.jsonl.gz")]
    assert cats["mine"] == [
        str(tmp_path / "extra" / "one.jsonl.gz"),
        str(tmp_path / "extra" / "two.jsonl.gz"),
    ]
    assert cats["no"] == [str(tmp_path / "extra" / "one.jsonl.gz")]


def test_folder_with_subfolder_categories(tmp_path):
    (tmp_path / "code" / "deep").mkdir(parents=True)
    write_jsonl_gz(tmp_path / "code" / "a.jsonl.gz", ["a"])
    write_jsonl_gz(tmp_path / "code" / "deep" / "b.jsonl.gz", ["b"])
    write_jsonl_gz(tmp_path / "en.jsonl.gz", ["e"])
    (tmp_path / "README.md").write_text("ignored")
    (tmp_path / ".cache").mkdir()
    cats = load_categories(str(tmp_path))
    assert list(cats) == ["code", "en"]
    assert cats["code"] == [
        str(tmp_path / "code" / "a.jsonl.gz"),
        str(tmp_path / "code" / "deep" / "b.jsonl.gz"),
    ]


def test_missing_path_names_category_and_path(tmp_path):
    spec = tmp_path / "cats.yaml"
    spec.write_text(f"en: {SAMPLE / 'en.jsonl.gz'}\nklingon: corpora/tlh.jsonl.gz\n")
    with pytest.raises(CategoryError) as info:
        load_categories(str(spec))
    msg = str(info.value)
    assert "klingon" in msg and "tlh.jsonl.gz" in msg
    assert info.value.category == "klingon"
    assert info.value.path.endswith("corpora/tlh.jsonl.gz")
    assert isinstance(info.value, ValueError)


def test_unreadable_path(tmp_path, monkeypatch):
    path = tmp_path / "secret.jsonl.gz"
    write_jsonl_gz(path, ["x"])
    path.chmod(0)
    if os.geteuid() == 0:  # root reads any file: make the permission check see what a user would
        real_access = os.access
        monkeypatch.setattr(
            os,
            "access",
            lambda p, mode, **kw: False if str(p) == str(path) else real_access(p, mode, **kw),
        )
    spec = tmp_path / "c.yaml"
    spec.write_text(f"s: {path}\n")
    with pytest.raises(CategoryError, match="secret"):
        load_categories(str(spec))


@pytest.mark.parametrize(
    "content, match",
    [
        ("", "no categories"),
        ("# only a comment\n", "no categories"),
        ("{}\n", "no categories"),
        ("- en.jsonl.gz\n", "must map"),
        ("en: a.jsonl.gz\nfr: b.jsonl.gz\nen: c.jsonl.gz\n", "duplicate category 'en'"),
        ("{en: a.jsonl.gz, 'en': b.jsonl.gz}\n", "duplicate category 'en'"),
        ("en:\n", "expected a path"),
        ("en: []\n", "expected a path"),
        ("en: {a: b}\n", "expected a path"),
        ("en: [unclosed\n", "invalid YAML"),
    ],
)
def test_bad_yaml_specs(tmp_path, content, match):
    spec = tmp_path / "cats.yaml"
    spec.write_text(content)
    with pytest.raises(CategoryError, match=match):
        load_categories(str(spec))


def test_bad_folders_and_specs(tmp_path):
    with pytest.raises(CategoryError, match="does not exist"):
        load_categories(str(tmp_path / "nope.yaml"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CategoryError, match="no categories"):
        load_categories(str(empty))
    dup = tmp_path / "dup"
    (dup / "en").mkdir(parents=True)
    write_jsonl_gz(dup / "en" / "a.jsonl.gz", ["a"])
    write_jsonl_gz(dup / "en.jsonl.gz", ["b"])
    with pytest.raises(CategoryError, match="duplicate category 'en'"):
        load_categories(str(dup))
    hollow = tmp_path / "hollow"
    (hollow / "code").mkdir(parents=True)
    (hollow / "code" / "notes.md").write_text("x")
    with pytest.raises(CategoryError, match="'code'") as info:
        load_categories(str(hollow))
    assert info.value.category == "code"
    wrong = tmp_path / "cats.txt"
    wrong.write_text("en: x\n")
    with pytest.raises(CategoryError, match="YAML"):
        load_categories(str(wrong))


def test_memory_yaml_spec():
    import fsspec

    fs = fsspec.filesystem("memory")
    try:
        fs.pipe("/catspec/data/en.jsonl", b'{"text": "hello"}\n')
        fs.pipe("/catspec/c.yaml", b"en: data/en.jsonl\n")
        cats = load_categories("memory://catspec/c.yaml")
        assert list(cats) == ["en"]
        (url,) = cats["en"]
        assert [d.text for d in iter_documents(url)] == ["hello"]
    finally:
        fs.rm("/catspec", recursive=True)


# ----------------------------------------------------------------------------- sampling


def test_sample_text_budget_and_determinism():
    urls = load_categories(str(SAMPLE))["en"]
    errors = ReadErrors()
    a = sample_text(urls, sample_bytes=50_000, errors=errors)
    b = sample_text(urls, sample_bytes=50_000, seed=7, errors=errors)
    assert a == b
    total = nbytes(a)
    assert 49_000 < total <= 50_000
    docs = [d.text for d in iter_documents(urls[0])]
    assert a[:-1] == docs[: len(a) - 1]  # whole documents, in file order
    last = docs[len(a) - 1]
    assert last.startswith(a[-1]) and (a[-1] == last or a[-1].endswith("\n"))
    assert not errors


def test_sample_text_across_files_stops_early(tmp_path):
    write_jsonl_gz(tmp_path / "a.jsonl.gz", ["aaaa\nbbbb", "", "cccc"])
    write_jsonl_gz(tmp_path / "b.jsonl.gz", ["dddd\neeee\nffff"])
    urls = [str(tmp_path / "a.jsonl.gz"), str(tmp_path / "b.jsonl.gz")]
    errors = ReadErrors()
    # a: 9 + 4 bytes, then 7 bytes left: "dddd\n" (5) fits, "dddd\neeee\n" does not
    assert sample_text(urls, sample_bytes=20, errors=errors) == ["aaaa\nbbbb", "cccc", "dddd\n"]
    assert sample_text(urls, sample_bytes=13, errors=errors) == ["aaaa\nbbbb", "cccc"]
    # a later file is never opened once the budget is met
    missing = str(tmp_path / "missing.jsonl")
    got = sample_text([urls[0], missing], sample_bytes=13, errors=errors)
    assert got == ["aaaa\nbbbb", "cccc"]
    assert errors.count(UNREADABLE) == 0
    # budget larger than the data: everything
    assert nbytes(sample_text(urls, sample_bytes=10**6, errors=errors)) == 27
    with pytest.raises(ValueError):
        sample_text(urls, sample_bytes=0, errors=errors)


def test_cut_to_bytes():
    assert cut_to_bytes("ab\ncd\nef", 7) == "ab\ncd\n"
    assert cut_to_bytes("ab\ncd", 10) == "ab\ncd"
    assert cut_to_bytes("日本語テキスト", 7) == "日本"  # no line fits: character boundary
    assert cut_to_bytes("x", 0) == ""


def test_split_documents():
    texts = [f"doc {i}" for i in range(101)]
    train, attack = split_documents(texts, fraction=0.3, seed=1)
    assert len(train) == 30 and len(attack) == 71
    assert set(train).isdisjoint(attack)
    assert sorted(train + attack) == sorted(texts)
    assert train == sorted(train, key=texts.index)  # original order kept
    assert split_documents(texts, fraction=0.3, seed=1) == (train, attack)
    assert split_documents(texts, fraction=0.3, seed=2)[0] != train
    half = split_documents(texts)
    assert (len(half[0]), len(half[1])) == (51, 50)
    assert split_documents(texts, fraction=0.0) == ([], texts)
    assert split_documents(texts, fraction=1.0) == (texts, [])
    dup = ["same"] * 10  # disjoint by position even when texts repeat
    t, a = split_documents(dup, 0.5)
    assert len(t) + len(a) == 10
    with pytest.raises(ValueError):
        split_documents(texts, fraction=1.5)


# ----------------------------------------------------------------------------- shards


def run_shards(plan, sample_bytes, shard_bytes, errors):
    samples = [sample_shard(shard, errors=errors) for shard in plan]
    assert all(isinstance(s, ShardSample) and s.n_bytes <= s.shard.max_bytes for s in samples)
    return merge_shard_samples(samples, sample_bytes=sample_bytes, shard_bytes=shard_bytes)


def test_shard_plan_matches_sequential_sample():
    urls = [str(SAMPLE / f"{n}.jsonl.gz") for n in NAMES]
    errors = ReadErrors()
    budget = 700_000
    plan = shard_plan(urls, sample_bytes=budget, shard_bytes=budget, category="all")
    assert plan == shard_plan(urls, sample_bytes=budget, shard_bytes=budget, category="all")
    assert plan[0] == Shard("all", urls[0], budget)
    assert [s.url for s in plan] == urls[: len(plan)]
    assert all(0 < s.max_bytes <= budget for s in plan)
    merged = run_shards(plan, budget, budget, errors)
    assert merged == sample_text(urls, sample_bytes=budget, errors=errors)
    assert not errors


def test_shard_bytes_caps_each_file():
    urls = [str(SAMPLE / f"{n}.jsonl.gz") for n in NAMES]
    errors = ReadErrors()
    plan = shard_plan(urls, sample_bytes=500_000, shard_bytes=100_000)
    assert all(s.max_bytes <= 100_000 for s in plan)
    merged = run_shards(plan, 500_000, 100_000, errors)
    # every file gives at most its own first 100 kB; the sixth fills the last few bytes
    first5 = [t for u in urls[:5] for t in sample_text(u, sample_bytes=100_000, errors=errors)]
    assert merged[: len(first5)] == first5
    rest = merged[len(first5) :]
    left = 500_000 - nbytes(first5)
    assert 0 < left < 1000
    assert rest == sample_text(urls[5], sample_bytes=left, errors=errors)
    assert 499_000 < nbytes(merged) <= 500_000
    assert not errors


def test_merge_stops_where_the_sequential_read_would(tmp_path):
    # One long document: the cap cuts it at a line boundary, leaving a few bytes of budget.
    write_jsonl_gz(tmp_path / "a.jsonl.gz", ["line one\n" * 100])
    write_jsonl_gz(tmp_path / "b.jsonl.gz", ["B"])
    urls = [str(tmp_path / "a.jsonl.gz"), str(tmp_path / "b.jsonl.gz")]
    errors = ReadErrors()
    plan = shard_plan(urls, sample_bytes=95, shard_bytes=1000)
    assert len(plan) == 2  # the estimate of a tiny .gz is low, so b is planned too
    merged = run_shards(plan, 95, 1000, errors)
    assert merged == sample_text(urls, sample_bytes=95, errors=errors) == ["line one\n" * 10]


def test_shard_plan_stops_when_estimates_cover_budget(tmp_path):
    for name in "abc":
        (tmp_path / f"{name}.txt").write_text("word " * 2000)  # 10 kB each
    urls = [str(tmp_path / f"{n}.txt") for n in "abc"]
    plan = shard_plan(urls, sample_bytes=15_000, shard_bytes=50_000)
    assert [(Path(s.url).name, s.max_bytes) for s in plan] == [("a.txt", 15_000), ("b.txt", 5_000)]
    with pytest.raises(ValueError):
        shard_plan(urls, sample_bytes=0, shard_bytes=1)
