"""Score columns of the Gopher / FineWeb filters (``gopher_*``, ``gopher_rep_*``, ``fineweb_*``).

The values the ``fast`` filters return must be what datatrove's own filter code computes (its
helpers ``find_duplicates``, ``find_top_duplicate``, ``get_n_grams``, ``find_all_duplicate``
and the expressions of its ``filter()`` methods, on the datatrove filter instance built from the
same parameters), null where datatrove never gets to compute them; and they must reach the
written Parquet (kept and rejected rows) with the schema's types, null where a filter did not
run.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_pipeline_fastfilters import _params

from pipeline.config import load_config
from pipeline.filters import FineWebQuality, GopherQuality, GopherRepetition, SpaceWordTokenizer
from pipeline.writer import FILTER_SCORE_FIELDS, OUTPUT_SCHEMA, REJECTED_SCHEMA, STAGING_SCHEMA

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
FILTERS = {
    "fineweb_quality": FineWebQuality,
    "gopher_repetition": GopherRepetition,
    "gopher_quality": GopherQuality,
}


def _head(path: Path, n: int) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line)["text"] for _, line in zip(range(n), fh, strict=False)]


def _div(a: float, b: float) -> float | None:
    return a / b if b else None


# ------------------------------------------------------------------------------------------
# references: datatrove's filter() code, recording what it computes


def _words(text: str) -> list[str]:
    from datatrove.utils.text import split_into_words

    return split_into_words(text, SpaceWordTokenizer())


def _repetition_reference(f, text: str) -> dict[str, float | None]:
    """``GopherRepetitionFilter.filter`` step by step: the signals it computes before its
    first failing check (the others stay None)."""
    from datatrove.pipeline.filters.gopher_repetition_filter import (
        find_all_duplicate,
        find_duplicates,
        find_top_duplicate,
        get_n_grams,
    )

    out: dict[str, float | None] = dict.fromkeys(GopherRepetition.score_columns)
    if not text:
        return out
    paragraphs = f.paragraph_exp.split(text.strip())
    dups, chars = find_duplicates(paragraphs)
    if f.dup_para_frac and dups / len(paragraphs) > f.dup_para_frac:
        return out
    if f.dup_para_char_frac and chars / len(text) > f.dup_para_char_frac:
        return out
    lines = f._line_splitter.split(text)
    dups, chars = find_duplicates(lines)
    out["gopher_rep_dup_line_frac"] = dups / len(lines)
    out["gopher_rep_dup_line_char_frac"] = chars / len(text)
    if f.dup_line_frac and dups / len(lines) > f.dup_line_frac:
        return out
    if f.dup_line_char_frac and chars / len(text) > f.dup_line_char_frac:
        return out
    words = _words(text)
    for n, frac in f.top_n_grams:
        grams = get_n_grams(words, n)
        if not grams:
            continue
        r = find_top_duplicate(grams) / len(text)
        if n == 2:
            out["gopher_rep_top_2gram_frac"] = r
        if r > frac:
            return out
    for n, frac in f.dup_n_grams:
        r = find_all_duplicate(words, n) / len(text)
        if n in (5, 10):
            out[f"gopher_rep_dup_{n}gram_frac"] = r
        if r > frac:
            return out
    return out


def _quality_reference(f, text: str) -> dict[str, float | None]:
    """The expressions of ``GopherQualityFilter.filter`` (every one, whatever rejects)."""
    from datatrove.utils.text import PUNCTUATION_SET

    words = _words(text)
    non_symbol = [w for w in words if any(ch not in PUNCTUATION_SET for ch in w)]
    lines = text.splitlines()
    n = len(words)
    return {
        "gopher_words": len(non_symbol),
        "gopher_mean_word_len": float(np.mean([len(w) for w in non_symbol]))
        if non_symbol
        else None,
        "gopher_symbol_word_ratio": _div(
            max(text.count("#"), text.count("...") + text.count("…")), n
        ),
        "gopher_bullet_lines_frac": _div(
            sum(s.lstrip().startswith("•") or s.lstrip().startswith("-") for s in lines),
            len(lines),
        ),
        "gopher_ellipsis_lines_frac": _div(
            sum(s.rstrip().endswith("...") or s.rstrip().endswith("…") for s in lines),
            len(lines),
        ),
        "gopher_alpha_words_frac": _div(sum(any(c.isalpha() for c in w) for w in words), n),
        "gopher_stop_words": len(f.stop_words.intersection(set(words))),
    }


def _fineweb_reference(f, text: str) -> dict[str, float | None]:
    """The expressions of ``FineWebQualityFilter.filter`` (every one, whatever rejects)."""
    from datatrove.pipeline.filters.gopher_repetition_filter import find_duplicates

    lines = [line for line in text.split("\n") if line.strip() != ""]
    return {
        "fineweb_line_punct_ratio": _div(
            sum(1 for line in lines if line.endswith(f.stop_chars)), len(lines)
        ),
        "fineweb_short_line_ratio": _div(
            sum(1 for line in lines if len(line) <= f.short_line_length), len(lines)
        ),
        "fineweb_char_dup_ratio": _div(find_duplicates(lines)[1], len(text.replace("\n", ""))),
        "fineweb_list_ratio": _div(text.count("\n"), len(_words(text))),
    }


REFERENCES = {
    "gopher_repetition": _repetition_reference,
    "gopher_quality": _quality_reference,
    "fineweb_quality": _fineweb_reference,
}


def _as_column_value(name: str, v: float | None):
    """What a reference value becomes in its column (float32 / int32, None)."""
    if v is None:
        return None
    if pa.types.is_integer(FILTER_SCORE_FIELDS[name]):
        return int(v)
    return float(np.float32(v))


@pytest.fixture(scope="module")
def docs(shared_dir) -> list[tuple[str, str]]:
    """(language, text): real Korean, English, German and Japanese documents and a few
    made-up ones that stop at different checks."""
    out = [("ko", t) for t in _head(shared_dir / "corpus" / "ko.jsonl.gz", 10)]
    out += [("ko", t) for t in _head(SAMPLE / "ko.jsonl.gz", 30)[20:30]]  # some rejected
    out += [("en", t) for t in _head(SAMPLE / "en.jsonl.gz", 8)]
    out += [("de", t) for t in _head(SAMPLE / "de.jsonl.gz", 4)]
    out += [("ja", t) for t in _head(SAMPLE / "ja.jsonl.gz", 4)]
    ko = out[0][1]
    out += [
        ("ko", "같은 줄입니다\n" * 12 + ko[:300]),  # duplicate lines
        ("ko", " ".join(["반복되는 두 단어"] * 40)),  # top n-gram
        ("en", "# one #two ... three… • four\n- five...\n" * 3),
        ("en", ""),
        ("en", " \n\n "),
        ("en", "... --- !!!"),
    ]
    return out


@pytest.mark.parametrize("name", list(FILTERS))
def test_scores_equal_datatrove_computation(name, docs):
    cls = FILTERS[name]
    langs = [lang for lang, _ in docs]
    texts = [text for _, text in docs]
    table = pa.table({"text": texts, "lang": langs})
    # the configured thresholds, and datatrove's defaults (stricter: more rows stop early)
    for params in (_params(name), {}):
        f = cls(params)
        reasons, scores = f.decide(table)
        slow = cls(params, implementation="datatrove")
        assert (f.implementation, slow.implementation) == ("fast", "datatrove")
        assert reasons.to_pylist() == slow.decide(table)[0].to_pylist()
        assert list(scores) == list(cls.score_columns)
        for col, arr in scores.items():
            assert arr.type == FILTER_SCORE_FIELDS[col] and len(arr) == len(texts)
        got = pa.table(scores).to_pylist()
        for i, (lang, text) in enumerate(docs):
            dt = f._filter_for(lang)
            if dt is None:  # the filter is off for the language: nothing computed
                assert set(got[i].values()) == {None}, (name, lang)
                continue
            ref = REFERENCES[name](dt, text)
            want = {c: _as_column_value(c, v) for c, v in ref.items()}
            assert got[i] == want, (name, i, lang, reasons[i], text[:80])
    # the comparison met rejected rows, kept rows, and nulls of checks not reached
    reasons = cls(_params(name)).decide(table)[0].to_pylist()
    assert None in reasons and {r for r in reasons if r}
    if name == "gopher_repetition":
        rows = pa.table(cls({}).decide(table)[1]).to_pylist()
        assert any(r["gopher_rep_dup_10gram_frac"] is not None for r in rows)
        assert any(
            r["gopher_rep_dup_line_frac"] is not None and r["gopher_rep_dup_5gram_frac"] is None
            for r in rows
        )


def test_scores_null_where_filter_does_not_compute():
    texts = [
        "첫 번째 문서입니다. 여러 단어가 있습니다.\n둘째 줄입니다.",
        "second doc. words and words",
    ]
    table = pa.table({"text": texts, "lang": ["ko", "code"]})  # every filter is off for code
    for name, cls in FILTERS.items():
        fast = cls(_params(name)).decide(table)[1]
        assert all(arr[1].as_py() is None for arr in fast.values()), name
        assert any(arr[0].as_py() is not None for arr in fast.values()), name
        # datatrove's implementation computes no score: the same columns, all null
        slow = cls(_params(name), implementation="datatrove").decide(table)[1]
        assert list(slow) == list(fast)
        for col, arr in slow.items():
            assert arr.type == FILTER_SCORE_FIELDS[col] and arr.null_count == len(texts)


def test_schemas_hold_every_filter_score():
    declared = [c for cls in FILTERS.values() for c in cls.score_columns]
    assert sorted(declared) == sorted(FILTER_SCORE_FIELDS)
    for schema in (OUTPUT_SCHEMA, STAGING_SCHEMA, REJECTED_SCHEMA):
        for col, typ in FILTER_SCORE_FIELDS.items():
            assert schema.field(col).type == typ, col


def test_written_parquet_has_scores(tmp_path):
    """A small run of the pipeline's phases (clean, write: what the Ray tasks run, called
    here without Ray) on a few documents: the score columns in kept and rejected Parquet."""
    from pipeline.executor import clean_shard, plan_shards, write_shard

    texts = _head(SAMPLE / "ko.jsonl.gz", 30) + _head(SAMPLE / "ja.jsonl.gz", 6) + ["짧다"]
    src = tmp_path / "in.jsonl.gz"
    with gzip.open(src, "wt", encoding="utf-8") as fh:
        for i, t in enumerate(texts):
            fh.write(json.dumps({"id": f"d{i}", "text": t}, ensure_ascii=False) + "\n")
    out = tmp_path / "out"
    cfg = load_config(inputs=[str(src)], output=str(out), stages={"dedup": {"enabled": False}})
    (shard,), _ = plan_shards(cfg)
    clean_shard(shard, cfg, str(out))
    write_shard(shard, cfg, str(out))

    (data_file,) = (out / "data").glob("*.parquet")
    (rej_file,) = (out / "rejected").glob("*.parquet")
    assert pq.read_schema(data_file).equals(OUTPUT_SCHEMA)
    assert pq.read_schema(rej_file).equals(REJECTED_SCHEMA)
    kept = pq.read_table(data_file).to_pylist()
    rejected = {r["orig_id"]: r for r in pq.read_table(rej_file).to_pylist()}
    gopher = list(GopherQuality.score_columns)
    fineweb = list(FineWebQuality.score_columns)
    assert kept and all(r["gopher_words"] is not None for r in kept if r["lang"] == "ko")
    for r in kept:
        assert all(r[c] is not None for c in fineweb), r["orig_id"]
        assert r["gopher_rep_dup_line_frac"] is not None
        if r["lang"] == "ja":  # gopher_quality off, no n-gram checks for Japanese
            assert all(r[c] is None for c in gopher)
            assert r["gopher_rep_top_2gram_frac"] is None
            assert r["gopher_rep_dup_5gram_frac"] is None
        else:
            assert all(r[c] is not None for c in gopher)
            assert r["gopher_rep_dup_10gram_frac"] is not None
    by_stage: dict[str, list[dict]] = {}
    for r in rejected.values():
        by_stage.setdefault(r["stage"], []).append(r)
    assert {"length", "korean", "gopher_repetition", "gopher_quality"} <= set(by_stage)
    for stage in ("length", "korean"):  # before the filters: no score
        assert all(r[c] is None for r in by_stage[stage] for c in FILTER_SCORE_FIELDS)
    for r in by_stage["gopher_repetition"]:
        assert all(r[c] is not None for c in fineweb)
        assert all(r[c] is None for c in gopher)
        # the signal that rejected the row is there
        assert r["reason"].startswith("top_") and r["gopher_rep_top_2gram_frac"] is not None
    for r in by_stage["gopher_quality"]:
        assert all(r[c] is not None for c in fineweb + gopher)
