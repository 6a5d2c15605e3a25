"""Inputs are data (issue 6): names from configs and files never leave the output folder, no
code is executed from what a user or a file says, count tables cannot point elsewhere."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.paths import UnsafePathError, check_component, safe_component

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"


def test_safe_component():
    assert safe_component("ko") == "ko" and safe_component("code-python") == "code-python"
    for evil in ("..", ".", "../../etc/passwd", "/abs", "a/b", "C:\\x", "", "..."):
        out = safe_component(evil)
        assert "/" not in out and "\\" not in out and out not in ("", ".", "..")
    assert check_component("part-00000.parquet") == "part-00000.parquet"
    for evil in ("../x.parquet", "/etc/passwd", "..", "a/b.parquet"):
        with pytest.raises(UnsafePathError):
            check_component(evil)


def _tree(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


def test_labels_from_a_config_stay_inside_the_output(ray_session, tmp_path):
    """``source`` and ``lang`` from a config become folder and file names: sanitised."""
    from pipeline.config import load_config
    from pipeline.executor import run_pipeline

    src = tmp_path / "in" / "..evil..jsonl.gz"
    src.parent.mkdir()
    src.write_bytes((SAMPLE / "en.jsonl.gz").read_bytes())
    out = tmp_path / "work" / "out"
    before = _tree(tmp_path)
    cfg = load_config(
        inputs=[{"path": str(src), "source": "../../../evil", "lang": "../../evil"}],
        output=str(out),
        writer={"partition_by_lang": True},
    )
    report = run_pipeline(cfg)
    assert report["kept_documents"] > 0
    created = _tree(tmp_path) - before
    assert created and all(out in p.parents or p == out or p == out.parent for p in created)
    assert all(out in p.parents for p in tmp_path.glob("**/evil*"))


def test_a_count_table_cannot_point_outside_its_folder(tmp_path):
    from pipeline.bpe.count import BPEInputError, CountTable

    secret = tmp_path / "secret.parquet"
    pq.write_table(pa.table({"word": ["x"], "count": [1]}), secret)
    folder = tmp_path / "counts"
    folder.mkdir()
    (folder / "counts.json").write_text(
        json.dumps({"pretokenizer": "gpt2", "files": ["../secret.parquet"]})
    )
    with pytest.raises(BPEInputError, match="not a plain file name"):
        CountTable.read(str(folder))


def test_no_code_from_data():
    """Static check of our sources: nothing deserialises with pickle, evaluates strings,
    trusts remote code or loads YAML with tags (a new use makes this fail)."""
    banned = {
        r"pickle\.loads?\(": "pickle load",
        r"(?<![\w.])eval\(": "eval",
        r"(?<![\w.])exec\(": "exec",
        r"trust_remote_code\s*=\s*True": "trust_remote_code",
        r"yaml\.load\((?![^\n]*Loader=_StringLoader)": "yaml.load (use safe_load)",
        r"yaml\.unsafe_load|yaml\.full_load": "unsafe YAML",
        r"allow_pickle\s*=\s*True": "numpy pickle",
        r"torch\.load\(": "torch.load",
    }
    hits = []
    for pkg in ("forensics", "pipeline", "jobs"):
        for f in (ROOT / pkg).rglob("*.py"):
            text = f.read_text("utf-8")
            for pat, what in banned.items():
                for m in re.finditer(pat, text):
                    line = text[: m.start()].count("\n") + 1
                    hits.append(f"{f.relative_to(ROOT)}:{line}: {what}")
    assert hits == []
    import yaml

    from forensics.categories import _StringLoader

    assert issubclass(_StringLoader, yaml.SafeLoader)  # the one yaml.load allowed above


def test_a_tokenizer_file_is_only_parsed(tmp_path):
    """A tokenizer.json naming a custom (Python) component is refused, not imported."""
    from forensics.merges import MergeListError
    from forensics.tokenizer_io import load_merge_list

    obj = {
        "version": "1.0",
        "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]},
        "pre_tokenizer": {"type": "Custom", "module": "os", "function": "system"},
        "normalizer": None,
    }
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(obj))
    with pytest.raises(MergeListError) as info:
        load_merge_list(str(path))
    assert str(path) in str(info.value) and "pre-tokenizer" in str(info.value)
