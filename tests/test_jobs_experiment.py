"""``python -m jobs.experiment CONFIG``: the experiment as a Ray job entrypoint."""

from __future__ import annotations

import json
from pathlib import Path

from jobs.experiment import main

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def test_experiment_job_writes_its_results(ray_session, tmp_path, capsys):
    cats = tmp_path / "cats.yaml"
    cats.write_text("".join(f"{c}: {SAMPLE / (c + '.jsonl.gz')}\n" for c in ("en", "ko", "ja")))
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(
        f"categories: {cats}\nout: {tmp_path / 'res'}\nsetting: languages\n"
        "n: 2\ntrials: 1\nvocab_size: 600\nbytes_per_category: 40000\nbaselines: false\n"
        "merges: null\n",
        "utf-8",
    )
    assert main([str(cfg)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["trials"] == 1 and "attack" in summary["median_log10_mse"]
    assert (tmp_path / "res" / "trials.parquet").is_file()
    assert json.loads((tmp_path / "res" / "summary.json").read_text())
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"categories: {cats}\nout: x\nn_trials: 3\n", "utf-8")
    assert main([str(bad)]) == 2
    assert "unknown config key(s) ['n_trials']" in capsys.readouterr().err
    bad.write_text(f"categories: {cats}\nout: x\nn: 5\n", "utf-8")
    assert main([str(bad)]) == 2
    assert "n = 5 but only 3 categories" in capsys.readouterr().err
