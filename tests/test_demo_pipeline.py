"""``mixtrace demo``: pipeline -> bpe train on a known mixture of its shards -> infer."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from forensics.demo import PIPELINE_DEMO_CATEGORIES
from jobs.cli import app


def test_demo_runs_the_whole_product(ray_session, tmp_path):
    out = tmp_path / "demo.json"
    work = tmp_path / "work"
    res = CliRunner().invoke(
        app, ["demo", "--seed", "1", "--json", str(out), "--workdir", str(work), "--quiet"]
    )
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["names"] == list(PIPELINE_DEMO_CATEGORIES)
    # the pipeline ran and wrote its shards and report; bpe train wrote its tokenizer
    report = json.loads((work / "pipeline" / "report.json").read_text())
    assert report["kept_documents"] > 0 and report["input_documents"] >= report["kept_documents"]
    assert list((work / "pipeline" / "data").glob("*.parquet"))
    train = json.loads((work / "tokenizer" / "train_report.json").read_text())
    # the truth is what the trainer used: the mixture over the pipeline's 'source' column (a
    # category whose drawn weight let no document through has no entry there: 0)
    used = train["counting"]["true_mixture"]
    assert set(used) <= set(data["truth"])
    assert {c: used.get(c, 0.0) for c in data["truth"]} == data["truth"]
    assert abs(sum(data["estimate"].values()) - 1) < 1e-9
    # measured (seeds 0-3): -3.60 -3.37 -3.79 -4.21; a uniform random guess: -1.27
    assert data["log10_mse"] <= -3.0, data
    # attacker and training sides are disjoint documents
    import pyarrow.parquet as pq

    train_ids = set(pq.read_table(work / "train-shards").column("id").to_pylist())
    for c in data["names"]:
        attack_ids = set(pq.read_table(work / "attack" / f"{c}.parquet").column("id").to_pylist())
        assert attack_ids and not attack_ids & train_ids
