"""``mixtrace bpe train | extend | report`` end to end on shards written like the pipeline's."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from jobs.cli import app

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def _shards(folder: Path, cats=("en", "ko", "de", "code-python"), per_cat: int = 30) -> Path:
    folder.mkdir(parents=True)
    for k, cat in enumerate(cats):
        rows = []
        with gzip.open(SAMPLE / f"{cat}.jsonl.gz", "rt", encoding="utf-8") as fh:
            for line in fh:
                d = json.loads(line)
                rows.append({"id": d["id"], "text": d["text"], "lang": cat, "source": cat})
                if len(rows) >= per_cat:
                    break
        pq.write_table(pa.Table.from_pylist(rows), folder / f"part-{k:05d}.parquet")
    return folder


def test_bpe_train_cli_with_a_mixture(tmp_path, ray_session):
    shards = _shards(tmp_path / "shards")
    res = CliRunner().invoke(
        app,
        [
            "bpe",
            "train",
            str(shards),
            "--vocab-size",
            "1500",
            "--mix",
            "ko=0.5,en=0.3,code*=0.2",
            "--out",
            str(tmp_path / "tok"),
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "tok" / "train_report.json").read_text())
    true = report["counting"]["true_mixture"]
    assert abs(true["ko"] - 0.5) < 0.05 and abs(true["en"] - 0.3) < 0.05
    assert "de" not in report["counting"]["bytes"]  # not in the mixture: not used
    tok = json.loads((tmp_path / "tok" / "tokenizer.json").read_text())
    assert len(tok["model"]["merges"]) == 1500 - 256
    # bad input: one red line, exit code 2
    bad = CliRunner().invoke(
        app,
        [
            "bpe",
            "train",
            str(shards),
            "--vocab-size",
            "1500",
            "--mix",
            "ko=0,en=0",
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert bad.exit_code == 2 and "all zero" in bad.output


def test_bpe_extend_and_report_cli(tmp_path, shared_tokenizers):
    shards = _shards(tmp_path / "ko", cats=("ko",), per_cat=60)
    english = tmp_path / "en.jsonl"
    with gzip.open(SAMPLE / "en.jsonl.gz", "rt", encoding="utf-8") as fh:
        english.write_text("".join(next(fh) for _ in range(10)), encoding="utf-8")
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "bpe",
            "extend",
            str(shared_tokenizers / "gpt2"),
            str(shards),
            "--add",
            "500",
            "--out",
            str(tmp_path / "ext"),
            "--check",
            str(english),
        ],
        env={"RAY_ADDRESS": ""},
    )
    assert res.exit_code == 0, res.output
    assert "encoded as before: 10/10" in res.output
    cats = tmp_path / "cats.yaml"
    cats.write_text(
        "".join(f"{c}: {SAMPLE / (c + '.jsonl.gz')}\n" for c in ("en", "ko", "fr")), "utf-8"
    )
    res = runner.invoke(
        app,
        [
            "bpe",
            "report",
            str(shared_tokenizers / "gpt2"),
            str(tmp_path / "ext"),
            "--categories",
            str(cats),
            "--out",
            str(tmp_path / "rep"),
            "--sample-bytes",
            "100000",
        ],
    )
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    gpt2, ext = rep
    assert ext["vocab_size"] == gpt2["vocab_size"] + 500
    # Korean: far fewer tokens per character; English and French unchanged
    assert (
        ext["categories"]["ko"]["tokens_per_char"]
        < 0.6 * gpt2["categories"]["ko"]["tokens_per_char"]
    )
    for c in ("en", "fr"):
        assert ext["categories"][c]["tokens"] == gpt2["categories"][c]["tokens"]
    assert gpt2["categories"]["fr"]["parity_pairs"] > 0  # LibreOffice help pages pair up
    assert ext["vocab_scripts"]["Hangul"] > gpt2["vocab_scripts"].get("Hangul", 0)
    assert gpt2["unreachable"] == 0 and ext["unreachable"] == 0
    assert (tmp_path / "rep" / "report.png").stat().st_size > 10_000
    assert "| gpt2 |" in (tmp_path / "rep" / "report.md").read_text()
    # a tokenizer that is not BPE
    bad = runner.invoke(
        app,
        [
            "bpe",
            "extend",
            str(shared_tokenizers / "llama2" / "tokenizer.json"),
            str(shards),
            "--add",
            "10",
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert bad.exit_code == 2 and "not a byte-level BPE" in bad.output


def test_bpe_job_entrypoint_count_then_train(tmp_path, ray_session, capsys):
    """jobs.bpe: count on Ray into a table, then train from the table (two jobs)."""
    from jobs.bpe import main

    shards = _shards(tmp_path / "shards")
    cfg = tmp_path / "count.yaml"
    cfg.write_text(
        f"shards: {shards}\nout: {tmp_path / 'job'}\npretokenizer: gpt2\n"
        "mix: {ko: 0.5, en: 0.5}\n",
        "utf-8",
    )
    assert main(["count", str(cfg)]) == 0
    assert (tmp_path / "job" / "counts" / "counts.json").is_file()
    train = tmp_path / "train.yaml"
    train.write_text(
        f"counts: {tmp_path / 'job' / 'counts'}\nout: {tmp_path / 'tok'}\nvocab_size: 1000\n",
        "utf-8",
    )
    assert main(["train", str(train)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["merges"] == 1000 - 256
    assert set(summary["true_mixture"]) == {"ko", "en"}
    tok = json.loads((tmp_path / "tok" / "tokenizer.json").read_text())
    assert len(tok["model"]["merges"]) == 744
    bad = tmp_path / "bad.yaml"
    bad.write_text("out: x\nvocab: 10\n", "utf-8")
    assert main(["train", str(bad)]) == 2
    assert "unknown config key(s) ['vocab']" in capsys.readouterr().err
