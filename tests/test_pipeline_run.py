"""End-to-end runs of the pipeline on Ray (the session's shared local Ray): data/sample through
the CLI sub-app, resumption after an interruption, bad input, dedup quality vs datatrove."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from jobs.pipeline_cli import app as pipeline_app
from pipeline.config import CLEAN_STAGES, load_config
from pipeline.dedup_eval import datatrove_minhash_removed, make_near_duplicates, score_removals
from pipeline.executor import PipelineInterrupted, run_pipeline
from pipeline.readers import expand_paths

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def _all_ids(out: Path) -> tuple[list[str], list[str]]:
    kept = pl.read_parquet(out / "data" / "**" / "*.parquet")["id"].to_list()
    rej_files = sorted((out / "rejected").glob("*.parquet"))
    rejected = (
        pl.concat([pl.read_parquet(f) for f in rej_files])["id"].to_list() if rej_files else []
    )
    return kept, rejected


def test_cli_end_to_end_on_sample(ray_session, tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(pipeline_app, ["run", str(SAMPLE), "--output", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    assert report["input_documents"] == 947  # every line of the 14 sample files
    assert 0 < report["kept_documents"] < report["input_documents"]
    assert report["accounted"]
    kept, rejected = _all_ids(out)
    assert len(kept) == report["kept_documents"]
    assert len(kept) + len(rejected) == report["input_documents"]
    assert len(set(kept) | set(rejected)) == report["input_documents"]  # no doc lost or doubled
    # readable by polars and pyarrow datasets; explicit schema
    df = pl.read_parquet(out / "data" / "*.parquet")
    for col in ("id", "text", "lang", "lang_score", "source", "n_bytes", "dup_cluster_size"):
        assert col in df.columns
    assert set(df["lang"].unique()) >= {"ko", "en", "de", "ja", "zh"}
    assert ds.dataset(out / "data").count_rows() == len(kept)
    # ... by Hugging Face datasets (local Parquet, offline) and by Ray Data
    import datasets

    hf = datasets.load_dataset(
        "parquet",
        data_files=sorted(str(p) for p in (out / "data").glob("*.parquet")),
        split="train",
        cache_dir=str(tmp_path / "hf-cache"),
    )
    assert hf.num_rows == len(kept) and sorted(hf["id"]) == sorted(kept)
    rd = ray_session.data.read_parquet(str(out / "data"))
    assert rd.count() == len(kept)
    assert sorted(r["id"] for r in rd.select_columns(["id"]).take_all()) == sorted(kept)
    # manifest: files, rows, bytes, checksums
    man = _manifest(out)
    assert man["rows"] == len(kept) and all(len(f["sha256"]) == 64 for f in man["files"])
    assert (out / "funnel.png").read_bytes()[:4] == b"\x89PNG"
    # the folder as the input of another run or a forensics category: the kept documents only
    assert list((out / "rejected").glob("*.parquet"))
    assert expand_paths(str(out)) == sorted(str(p) for p in (out / "data").glob("*.parquet"))
    assert not (out / "_work").exists() and (out / "_SUCCESS").exists()
    # per stage/language/reason counts, PII counts, the Korean stages ran
    assert "ko" in report["by_language"] and report["by_language"]["ko"]["kept_documents"] > 0
    assert report["pii"].get("email", 0) > 0
    stages = [s["name"] for s in report["stages"]]
    assert stages[:3] == ["normalize", "langid", "length"] and stages[-1] == "dedup"
    # a second run is a no-op
    res = CliRunner().invoke(pipeline_app, ["run", str(SAMPLE), "--output", str(out)])
    assert res.exit_code == 0 and "already complete" in " ".join(res.output.split())


def test_cli_errors_exit_2(tmp_path):
    runner = CliRunner()
    res = runner.invoke(pipeline_app, ["run", str(tmp_path / "missing.yaml")])
    assert res.exit_code == 2 and "config file not found" in res.output
    res = runner.invoke(
        pipeline_app, ["run", str(tmp_path / "nothing-here"), "-o", str(tmp_path / "o")]
    )
    assert res.exit_code == 2 and "no such file" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages: {gopher: {}}\n")
    res = runner.invoke(pipeline_app, ["run", str(bad)])
    assert res.exit_code == 2 and "unknown config key 'stages.gopher'" in res.output


def test_resume_after_interruption_gives_identical_output(ray_session, tmp_path):
    files = [str(SAMPLE / f"{x}.jsonl.gz") for x in ("ko", "en", "de", "ja", "fr", "ko")]
    files[-1] = str(tmp_path / "ko-copy.jsonl.gz")  # a second Korean file: exact duplicates
    Path(files[-1]).write_bytes((SAMPLE / "ko.jsonl.gz").read_bytes())
    small = {"row_group_bytes": 20000, "file_bytes": 60000, "partition_by_lang": True}

    def cfg(out):
        return load_config(
            inputs=files,
            output=str(out),
            writer=small,
            executor={"dedup_partitions": 3, "batch_size": 64},
        )

    ref = run_pipeline(cfg(tmp_path / "ref"))
    with pytest.raises(PipelineInterrupted):
        run_pipeline(cfg(tmp_path / "resumed"), stop_after_shards=2)
    done = list((tmp_path / "resumed" / "_work" / "clean").glob("*.json"))
    assert 2 <= len(done) < len(files)
    resumed = run_pipeline(cfg(tmp_path / "resumed"))
    assert _manifest(tmp_path / "ref") == _manifest(tmp_path / "resumed")
    for key in ("input_documents", "kept_documents", "removed_by_stage", "by_language", "pii"):
        assert ref[key] == resumed[key]
    assert ref["removed_by_stage"]["dedup"]["exact_duplicate"][0] > 0
    assert len(_manifest(tmp_path / "ref")["files"]) > 5  # several files and language folders
    assert (tmp_path / "ref" / "data" / "ko").is_dir()
    # the duplicated Korean file: every kept doc of the copy is a duplicate of the original
    kept = pl.read_parquet(tmp_path / "ref" / "data" / "**" / "*.parquet")
    assert kept.filter(pl.col("id").str.starts_with("ko-copy/")).height == 0
    assert kept.filter(pl.col("id").str.starts_with("ko/")).height > 0
    assert kept.filter(pl.col("dup_cluster_size") > 1).height > 0
    # a different config in the same folder is refused
    with pytest.raises(ValueError, match="other inputs/config"):
        run_pipeline(load_config(inputs=files[:2], output=str(tmp_path / "ref")))


def test_bad_input_is_reported_and_run_continues(ray_session, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    good = [json.loads(x) for x in gzip.open(SAMPLE / "en.jsonl.gz", "rt")][:20]
    lines = [json.dumps(x).encode() for x in good]
    (d / "invalid_utf8.jsonl").write_bytes(
        b'{"id": "u1", "text": "caf\xe9 au lait is a drink made of coffee and hot milk, served in a bowl."}\n'
        + b"\n".join(lines[:5])
        + b"\n"
    )
    with gzip.open(d / "truncated.jsonl.gz", "wb") as fh:
        fh.write(b"\n".join(lines) + b"\n")
    blob = (d / "truncated.jsonl.gz").read_bytes()
    (d / "truncated.jsonl.gz").write_bytes(blob[: len(blob) // 2])
    pq.write_table(pa.table({"text": [g["text"] for g in good[:3]]}), d / "corrupt.parquet")
    raw = (d / "corrupt.parquet").read_bytes()
    (d / "corrupt.parquet").write_bytes(raw[:100] + b"garbage" + raw[200:])
    (d / "missing_field.jsonl").write_text('{"id": 1, "body": "no text"}\n{"id": 2, "text": ""}\n')
    (d / "big_line.jsonl").write_text(
        json.dumps({"id": "big", "text": ("word " * 2_100_000)}) + "\n"
    )
    rnd = random.Random(0)
    (d / "binary.jsonl").write_bytes(bytes(rnd.randrange(256) for _ in range(5000)))
    (d / "image.bin").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    out = tmp_path / "out"
    cfg = load_config(inputs=[str(d), str(d / "image.bin")], output=str(out))
    report = run_pipeline(cfg)
    files = report["read_errors"]["files"]
    by_name = {Path(k).name: v for k, v in files.items()}
    assert by_name["invalid_utf8.jsonl"]["invalid_utf8"] == 1
    assert "truncated" in by_name["truncated.jsonl.gz"]
    # the footer reads; its only row group is damaged: its 3 rows are counted as lost
    assert by_name["corrupt.parquet"] == {"bad_row_group": 3}
    assert by_name["missing_field.jsonl"]["missing_text"] == 1
    assert by_name["binary.jsonl"] == {"binary": 1}
    totals = report["read_errors"]["by_reason"]
    assert totals["binary"] == {"files": 1, "count": 1}
    assert totals["bad_row_group"] == {"files": 1, "count": 3}
    assert report["unreadable_records"] == 3 + 1  # the lost row group, the record without text
    assert report["read_errors"]["skipped_inputs"][0]["path"].endswith("image.bin")
    assert any("truncated.jsonl.gz" in m for m in report["read_errors"]["messages"])
    assert report["accounted"]
    assert report["removed_by_stage"]["length"]["empty"][0] >= 1
    assert report["removed_by_stage"]["length"]["too_long"][0] == 1
    kept, rejected = _all_ids(out)
    assert len(kept) + len(rejected) == report["input_documents"]
    rej = pl.concat([pl.read_parquet(f) for f in sorted((out / "rejected").glob("*.parquet"))])
    assert rej.filter(pl.col("orig_id") == "big")["reason"].to_list() == ["too_long"]
    texts = pl.read_parquet(out / "data" / "*.parquet")["text"].to_list() + rej["text"].to_list()
    assert any("caf\ufffd au lait" in t for t in texts)  # invalid byte replaced, doc kept


def test_dedup_quality_against_datatrove(ray_session, shared_dir, tmp_path, capsys):
    base = [json.loads(x)["text"] for x in gzip.open(shared_dir / "corpus" / "ko.jsonl.gz", "rt")]
    base += [json.loads(x)["text"] for x in gzip.open(shared_dir / "corpus" / "en.jsonl.gz", "rt")]
    rnd = random.Random(1)
    base = rnd.sample([t for t in base if len(t.split()) >= 80], 160)
    texts, info = make_near_duplicates(base, per_rate=6, seed=2)
    src = tmp_path / "dups.jsonl"
    src.write_text(
        "".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(texts))
    )
    off = {"enabled": False}
    stages = {k: off for k in CLEAN_STAGES if k != "normalize"}
    out = tmp_path / "out"
    report = run_pipeline(load_config(inputs=[str(src)], output=str(out), stages=stages))
    rej = pl.read_parquet(out / "rejected" / "*.parquet")
    removed = {int(x) for x in rej["orig_id"].to_list()}
    ours = score_removals(texts, removed)
    theirs = score_removals(texts, datatrove_minhash_removed(texts, str(tmp_path / "dt")))
    with capsys.disabled():
        print(
            f"\ndedup quality ({len(texts)} docs, {ours['required']} required removals): "
            f"mixtrace P={ours['precision']:.3f} R={ours['recall']:.3f}; "
            f"datatrove P={theirs['precision']:.3f} R={theirs['recall']:.3f}"
        )
    assert ours["precision"] >= 0.95 and ours["recall"] >= 0.9
    assert ours["recall"] >= theirs["recall"] - 0.05
    # exact copies are removed as exact duplicates and every copy is in its original's cluster
    copies = [i for i, d in enumerate(info) if d["kind"] == "copy"]
    reasons = dict(
        zip(rej["orig_id"].cast(pl.Int64).to_list(), rej["reason"].to_list(), strict=True)
    )
    assert all(reasons.get(i) == "exact_duplicate" for i in copies)
    assert report["dedup"]["edges"] > 0


def test_pipeline_is_a_mixtrace_subcommand():
    from typer.testing import CliRunner

    from jobs.cli import app as main_app

    res = CliRunner().invoke(main_app, ["pipeline", "run", "--help"])
    assert res.exit_code == 0 and "--output" in res.output
