"""``mixtrace pipeline run config.yaml``: a config naming inputs of every format (JSONL .gz and
.zst, Parquet, plain text) by path, glob and ``file://`` URL, with a text field name and source
labels, and a ``file://`` output URL."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard
from typer.testing import CliRunner

from jobs.pipeline_cli import app as pipeline_app

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def _docs(name: str, n: int) -> list[dict]:
    with gzip.open(SAMPLE / f"{name}.jsonl.gz", "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh][:n]


def test_config_file_with_every_format_glob_labels_and_urls(ray_session, tmp_path):
    raw = tmp_path / "raw"
    (raw / "ko").mkdir(parents=True)
    (raw / "web").mkdir()
    ko, en, de, fr = _docs("ko", 12), _docs("en", 10), _docs("de", 8), _docs("fr", 6)
    # Korean as zstd JSONL with the text under "body", in two files picked by a glob
    for k, part in enumerate((ko[:6], ko[6:])):
        lines = "".join(json.dumps({"id": d["id"], "body": d["text"]}) + "\n" for d in part)
        (raw / "ko" / f"part-{k}.jsonl.zst").write_bytes(
            zstandard.ZstdCompressor().compress(lines.encode("utf-8"))
        )
    (raw / "ko" / "notes.md").write_text("not an input\n")  # not matched by the glob
    # English as Parquet, German as gzip JSONL, French as plain text (blank-line paragraphs)
    pq.write_table(
        pa.table({"id": [d["id"] for d in en], "body": [d["text"] for d in en]}),
        raw / "web" / "en.parquet",
    )
    with gzip.open(raw / "web" / "de.jsonl.gz", "wt", encoding="utf-8") as fh:
        for d in de:
            fh.write(json.dumps({"id": d["id"], "body": d["text"]}) + "\n")
    paragraphs = [" ".join(d["text"].split()) for d in fr]
    (raw / "fr.txt").write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    config = tmp_path / "job.yaml"
    config.write_text(
        f"""inputs:
  - path: {raw}/ko/*.jsonl.zst
    source: ko-web
    text_field: body
    lang: ko
  - path: file://{raw}/web
    source: crawl
    text_field: body
  - path: {raw}/fr.txt
    source: fr-text
output: file://{out}
writer:
  partition_by_lang: true
""",
        encoding="utf-8",
    )
    res = CliRunner().invoke(pipeline_app, ["run", f"file://{config}"])  # the config as a URL
    assert res.exit_code == 0, res.output
    n_files = 5
    for phase in ("clean", "write"):  # a progress line per finished shard
        assert sum(f"{phase}: shard " in ln for ln in res.output.splitlines()) == n_files
        assert f"{phase}: shard {n_files}/{n_files} done" in res.output
    report = json.loads((out / "report.json").read_text())
    n_fr = len(paragraphs)
    assert report["input_documents"] == len(ko) + len(en) + len(de) + n_fr
    assert report["accounted"] and report["kept_documents"] > 0
    assert report["read_errors"]["files"] == {}
    kept = pl.read_parquet(out / "data" / "**" / "*.parquet")
    rejected = pl.concat([pl.read_parquet(f) for f in sorted((out / "rejected").glob("*.parquet"))])
    both = pl.concat(
        [kept.select("id", "source", "orig_id"), rejected.select("id", "source", "orig_id")]
    )
    assert both.height == report["input_documents"] == both["id"].n_unique()
    # every input came through with its label; ids start with the source label
    assert set(both["source"]) == {"ko-web", "crawl", "fr-text"}
    assert all(i.startswith(f"{s}/") for i, s in zip(both["id"], both["source"], strict=True))
    # the records' own ids are kept beside ours
    by_source = {s: set(g["orig_id"]) for (s,), g in both.group_by("source")}
    assert by_source["ko-web"] == {d["id"] for d in ko}
    assert by_source["crawl"] == {d["id"] for d in en + de}
    # the declared language is kept; Korean landed in its own partition
    assert set(kept.filter(pl.col("source") == "ko-web")["lang"]) == {"ko"}
    assert (out / "data" / "ko").is_dir()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows"] == kept.height


def test_a_run_begun_with_another_output_format_is_not_resumed(ray_session, tmp_path, monkeypatch):
    """A partial run of a version with another id/dedup layout is refused, not mixed in."""
    import pytest

    from pipeline import executor
    from pipeline.config import ConfigError, load_config

    cfg = load_config(
        inputs=[str(SAMPLE / "en.jsonl.gz"), str(SAMPLE / "de.jsonl.gz")], output=str(tmp_path)
    )
    monkeypatch.setattr(executor, "OUTPUT_FORMAT", executor.OUTPUT_FORMAT - 1)
    with pytest.raises(executor.PipelineInterrupted):
        executor.run_pipeline(cfg, stop_after_shards=1)
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="older output format"):
        executor.run_pipeline(cfg)
    report = executor.run_pipeline(cfg, overwrite=True)
    assert report["accounted"] and report["input_documents"] > 0
