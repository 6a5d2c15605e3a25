"""Bad input loses nothing valid and is reported: damaged Parquet row groups, binary files,
unsupported files inside input folders; document ids do not depend on the other inputs."""

from __future__ import annotations

import gzip
import json
import random
import shutil
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from pipeline.config import ConfigError, load_config
from pipeline.executor import _doc_batches, plan_shards, run_pipeline
from pipeline.readers import (
    BAD_JSON,
    BAD_ROW_GROUP,
    BINARY,
    CORRUPT,
    INVALID_UTF8,
    NO_DOCUMENTS,
    ReadErrors,
    expand_inputs,
    expand_paths,
    iter_documents,
    looks_binary,
)


def read_all(url: str) -> tuple[list, ReadErrors]:
    errors = ReadErrors()
    return list(iter_documents(url, errors=errors)), errors


def random_bytes(n: int, seed: int = 0, low: int = 0) -> bytes:
    rnd = random.Random(seed)
    return bytes(rnd.randrange(low, 256) for _ in range(n))


# ----------------------------------------------------------------------------- Parquet


def write_three_groups(path: Path, with_id: bool = False) -> list[str]:
    texts = [f"document {i}: some words of text to read" for i in range(30)]
    cols = {"text": texts}
    if with_id:
        cols = {"id": [f"r{i}" for i in range(30)], "text": texts}
    pq.write_table(pa.table(cols), str(path), row_group_size=10)
    return texts


def damage_column_chunk(path: Path, group: int, column: str) -> None:
    """Overwrite one row group's column chunk (its pages, found from the footer)."""
    meta = pq.ParquetFile(str(path)).metadata
    assert meta.num_row_groups == 3
    rg = meta.row_group(group)
    (col,) = [rg.column(c) for c in range(rg.num_columns) if rg.column(c).path_in_schema == column]
    start = col.dictionary_page_offset or col.data_page_offset
    data = bytearray(path.read_bytes())
    data[start : start + col.total_compressed_size] = b"\xab" * col.total_compressed_size
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("column", ["text", "id"])
def test_damaged_middle_row_group_loses_only_its_rows(tmp_path, column):
    path = tmp_path / "three.parquet"
    texts = write_three_groups(path, with_id=True)
    damage_column_chunk(path, 1, column)
    docs, errors = read_all(str(path))
    assert [d.text for d in docs] == texts[:10] + texts[20:]  # first and last group whole
    assert [d.id for d in docs] == [f"r{i}" for i in [*range(10), *range(20, 30)]]
    url = str(path)
    assert errors.count(BAD_ROW_GROUP, url) == 10  # rows lost
    assert errors.count(CORRUPT, url) == errors.count(NO_DOCUMENTS, url) == 0
    (detail,) = errors.examples(url, BAD_ROW_GROUP)
    assert detail.startswith("row group 1 of 3 (10 rows from row 10; 10 lost from row 10): ")
    (line,) = errors.warnings()
    assert line.startswith(f"{url}: 10 row(s) lost in unreadable Parquet row group(s)")
    assert errors.has_file_errors


def test_damaged_row_group_keeps_row_numbers_of_later_groups(tmp_path):
    path = tmp_path / "noid.parquet"
    write_three_groups(path)
    damage_column_chunk(path, 1, "text")
    docs, errors = read_all(str(path))
    # ids made from row numbers: the last group's rows keep theirs
    assert [d.id.rsplit("#", 1)[1] for d in docs] == [str(i) for i in [*range(10), *range(20, 30)]]
    assert errors.count(BAD_ROW_GROUP) == 10


def test_page_checksums_catch_damaged_values(tmp_path):
    path = tmp_path / "crc.parquet"
    texts = [f"row {i} " + "words " * 20 for i in range(30)]
    pq.write_table(
        pa.table({"text": texts}),
        str(path),
        row_group_size=10,
        write_page_checksum=True,
        compression="none",
        use_dictionary=False,
    )
    col = pq.ParquetFile(str(path)).metadata.row_group(1).column(0)
    data = bytearray(path.read_bytes())
    mid = col.data_page_offset + col.total_compressed_size // 2
    data[mid : mid + 5] = b"#####"  # inside a value: the page header still parses
    path.write_bytes(bytes(data))
    docs, errors = read_all(str(path))
    assert [d.text for d in docs] == texts[:10] + texts[20:]  # no damaged text let through
    assert errors.count(BAD_ROW_GROUP, str(path)) == 10
    assert "CRC" in errors.examples(str(path), BAD_ROW_GROUP)[0]


def test_every_row_group_damaged_is_not_no_documents(tmp_path):
    path = tmp_path / "all.parquet"
    write_three_groups(path)
    for g in range(3):
        damage_column_chunk(path, g, "text")
    docs, errors = read_all(str(path))
    assert docs == []
    assert errors.count(BAD_ROW_GROUP, str(path)) == 30
    assert len(errors.examples(str(path), BAD_ROW_GROUP)) == 3
    assert errors.count(NO_DOCUMENTS) == 0


# ----------------------------------------------------------------------------- binary files


def test_binary_txt_reported_and_yields_nothing(tmp_path):
    path = tmp_path / "random.txt"
    path.write_bytes(random_bytes(5000))
    docs, errors = read_all(str(path))
    assert docs == []
    assert errors.by_file() == {str(path): {BINARY: 1}}  # no invalid_utf8, no no_documents
    assert "NUL byte" in errors.examples(str(path), BINARY)[0]
    assert errors.has_file_errors
    # without any NUL byte, the share of invalid UTF-8 and control bytes decides
    path.write_bytes(random_bytes(5000, seed=1, low=1))
    docs, errors = read_all(str(path))
    assert docs == [] and errors.count(BINARY, str(path)) == 1
    assert "invalid UTF-8" in errors.warnings()[0]


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_binary_jsonl_compressed_detected_after_decompression(tmp_path, codec):
    blob = random_bytes(20000, seed=2)
    if codec == "gzip":
        path, data = tmp_path / "blob.jsonl.gz", gzip.compress(blob)
    else:
        path, data = tmp_path / "blob.jsonl.zst", zstandard.ZstdCompressor().compress(blob)
    path.write_bytes(data)
    docs, errors = read_all(str(path))
    assert docs == []
    assert errors.by_file() == {str(path): {BINARY: 1}}
    assert errors.count(BAD_JSON) == 0


def test_text_with_a_few_bad_bytes_is_still_read(tmp_path):
    # UTF-8 with stray bytes
    path = tmp_path / "few.txt"
    body = "Ein Absatz mit normalem Text. " * 40
    path.write_bytes(body.encode() + b"\xff\xfe\n\ncaf\xe9 au lait\n")
    docs, errors = read_all(str(path))
    assert len(docs) == 2 and docs[1].text == "caf\ufffd au lait"
    assert errors.count(INVALID_UTF8, str(path)) == 3 and errors.count(BINARY) == 0
    # Latin-1 German: a few percent of bad bytes, replaced and counted, not binary
    path = tmp_path / "latin1.jsonl"
    line = json.dumps({"text": "Grüße aus Köln"}, ensure_ascii=False)
    path.write_bytes((line + "\n").encode("latin-1") * 200)
    docs, errors = read_all(str(path))
    assert len(docs) == 200 and docs[0].text == "Gr\ufffd\ufffde aus K\ufffdln"
    assert errors.count(INVALID_UTF8, str(path)) == 600 and errors.count(BINARY) == 0


def test_sniff_boundary_does_not_cut_characters():
    korean = "가나다라마바사 " * 2000  # 3-byte characters across the 8 KiB sniffed block
    block = korean.encode()[:8192]
    assert looks_binary(block, final=False) is None
    assert looks_binary(b"plain text\twith tabs\r\n\x1b[31mcolour\x1b[0m\n") is None
    assert looks_binary(b"text\x00") == "NUL byte at offset 4"
    assert looks_binary(b"") is None


def test_large_korean_jsonl_is_text(tmp_path):
    path = tmp_path / "ko.jsonl"
    rec = {"text": "한국어 문장입니다. " * 700}  # one line of ~19 KB
    path.write_text(json.dumps(rec, ensure_ascii=False) + "\n", "utf-8")
    docs, errors = read_all(str(path))
    assert [d.text for d in docs] == [rec["text"]] and not errors


# ----------------------------------------------------------------------------- unsupported files


def make_folder(root: Path) -> None:
    (root / "sub").mkdir(parents=True)
    (root / "a.jsonl").write_text('{"text": "alpha"}\n')
    (root / "sub" / "b.txt").write_text("beta\n")
    (root / "image.bin").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    (root / "sub" / "notes.md").write_text("# not data\n")
    (root / ".cache").write_bytes(b"hidden")


def test_unsupported_files_in_folder_are_listed(tmp_path):
    make_folder(tmp_path / "in")
    found = expand_inputs(str(tmp_path / "in"))
    assert [(Path(f.url).name, f.rel) for f in found.files] == [
        ("a.jsonl", "a.jsonl"),
        ("b.txt", "sub/b.txt"),
    ]
    assert all(f.root == str(tmp_path / "in") for f in found.files)
    skipped = {Path(s["path"]).name: s["reason"] for s in found.skipped}
    assert set(skipped) == {"image.bin", "notes.md"}  # hidden entries are not data
    assert all("unsupported file type" in r and "in" in r for r in skipped.values())
    # expand_paths: the same files; unsupported ones collected on request
    got: list[dict[str, str]] = []
    assert expand_paths(str(tmp_path / "in"), skipped=got) == [f.url for f in found.files]
    assert got == found.skipped
    assert expand_paths(str(tmp_path / "in")) == [f.url for f in found.files]
    # a glob: relative to its fixed part; the explicit unsupported file is listed once
    found = expand_inputs([str(tmp_path / "in" / "*"), str(tmp_path / "in" / "image.bin")])
    assert {f.rel for f in found.files} == {"a.jsonl", "sub/b.txt"}
    assert sorted(Path(s["path"]).name for s in found.skipped) == ["image.bin", "notes.md"]
    # only unsupported files: listed, not an error (expand_paths without a list still raises)
    only = tmp_path / "only"
    only.mkdir()
    (only / "x.csv").write_text("a,b\n")
    assert expand_inputs(str(only)).files == []
    assert [Path(s["path"]).name for s in expand_inputs(str(only)).skipped] == ["x.csv"]
    with pytest.raises(FileNotFoundError):
        expand_paths(str(only))
    with pytest.raises(ValueError, match="unsupported"):
        expand_paths(str(only / "x.csv"))


def test_plan_shards_lists_unsupported_files_of_folders(tmp_path):
    make_folder(tmp_path / "in")
    cfg = load_config(inputs=[str(tmp_path / "in"), str(tmp_path / "in" / "image.bin")])
    shards, skipped = plan_shards(cfg)
    assert [Path(s["url"]).name for s in shards] == ["a.jsonl", "b.txt"]
    assert [Path(s["path"]).name for s in skipped] == ["image.bin", "notes.md"]
    assert all(s["reason"] for s in skipped)


# ----------------------------------------------------------------------------- stable ids


def doc_ids(cfg) -> dict[str, list[str]]:
    """url -> the document ids of its shard (read without Ray)."""
    shards, _ = plan_shards(cfg)
    out = {}
    for shard in shards:
        ids: list[str] = []
        for table in _doc_batches(shard, 2, ReadErrors()):
            ids += table["id"].to_pylist()
        out[shard["url"]] = ids
    return out


def write_docs(path: Path, n: int, tag: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": f"{tag} {i}"}) + "\n" for i in range(n)))


def test_ids_do_not_depend_on_other_inputs(tmp_path):
    write_docs(tmp_path / "x" / "x.jsonl", 3, "x")
    write_docs(tmp_path / "a" / "part.jsonl", 5, "a")
    write_docs(tmp_path / "a" / "sub" / "part.jsonl", 2, "a2")
    write_docs(tmp_path / "b.jsonl", 4, "b")
    a, b, x = str(tmp_path / "a"), str(tmp_path / "b.jsonl"), str(tmp_path / "x")
    two = doc_ids(load_config(inputs=[a, b]))
    three = doc_ids(load_config(inputs=[x, a, b]))
    assert len(two) == 3 and len(three) == 4
    for url, ids in two.items():
        assert three[url] == ids  # A's and B's ids unchanged by X in front
    assert two[str(tmp_path / "a" / "part.jsonl")][0].startswith("part/")
    assert all(i.endswith("/000000000") for i in (v[0] for v in two.values()))
    everything = [i for v in three.values() for i in v]
    assert len(everything) == len(set(everything)) == 3 + 5 + 2 + 4
    # the same folder mounted elsewhere (or through another URL) keeps its ids
    shutil.copytree(tmp_path / "a", tmp_path / "mnt" / "a")
    moved = doc_ids(load_config(inputs=[str(tmp_path / "mnt" / "a")]))
    assert sorted(moved.values()) == sorted(v for k, v in two.items() if k != b)


def test_folders_of_same_named_files_keep_their_ids(tmp_path):
    """Two input folders of ``part-00000.jsonl`` files (the usual layout): adding one folder
    changes no id of the other."""
    for d in ("ko", "en"):
        write_docs(tmp_path / d / "part-00000.jsonl", 3, d)
    ko, en = str(tmp_path / "ko"), str(tmp_path / "en")
    alone = doc_ids(load_config(inputs=[ko]))
    both = doc_ids(load_config(inputs=[en, ko]))
    url = str(tmp_path / "ko" / "part-00000.jsonl")
    assert both[url] == alone[url]
    flat = [i for v in both.values() for i in v]
    assert len(flat) == len(set(flat)) == 6


def test_same_folder_name_and_path_under_two_specs_does_not_collide(tmp_path):
    for d in ("p", "q"):
        write_docs(tmp_path / d / "ko" / "data.jsonl", 3, d)
    p, q = str(tmp_path / "p" / "ko"), str(tmp_path / "q" / "ko")
    ids = doc_ids(load_config(inputs=[p, q]))
    flat = [i for v in ids.values() for i in v]
    assert len(flat) == len(set(flat)) == 6
    # the first keeps the key of its folder and path, as when it is read alone
    first = str(tmp_path / "p" / "ko" / "data.jsonl")
    assert ids[first] == doc_ids(load_config(inputs=[p]))[first]
    # distinct source labels: both keep their folder-and-path keys
    labelled = doc_ids(load_config(inputs=[{"path": p, "source": "p"}, {"path": q, "source": "q"}]))
    keys = {v[0].split("/")[1] for v in labelled.values()}
    assert len(keys) == 1 and {v[0].split("/")[0] for v in labelled.values()} == {"p", "q"}


# ----------------------------------------------------------------------------- end to end


def test_pipeline_reports_row_groups_binary_and_unsupported(ray_session, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    texts = write_three_groups(d / "groups.parquet")
    damage_column_chunk(d / "groups.parquet", 1, "text")
    (d / "random.txt").write_bytes(random_bytes(5000))
    (d / "blob.jsonl.gz").write_bytes(gzip.compress(random_bytes(5000, seed=3)))
    (d / "image.bin").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    (d / "few_bad.txt").write_bytes(
        b"A first paragraph of ordinary text, long enough to be kept.\n\n"
        b"A second one with a bad byte: caf\xe9 au lait, served in a bowl.\n"
    )
    out = tmp_path / "out"
    report = run_pipeline(load_config(inputs=[str(d)], output=str(out)))
    by_name = {Path(k).name: v for k, v in report["read_errors"]["files"].items()}
    assert by_name["groups.parquet"] == {BAD_ROW_GROUP: 10}
    assert by_name["random.txt"] == {BINARY: 1}
    assert by_name["blob.jsonl.gz"] == {BINARY: 1}
    assert by_name["few_bad.txt"] == {INVALID_UTF8: 1}
    assert [Path(s["path"]).name for s in report["read_errors"]["skipped_inputs"]] == ["image.bin"]
    messages = "\n".join(report["read_errors"]["messages"])
    assert "groups.parquet: 10 row(s) lost" in messages and "row group 1 of 3" in messages
    assert report["input_documents"] == 20 + 2  # both outer row groups, both paragraphs
    assert report["accounted"]
    files = sorted((out / "data").rglob("*.parquet")) + sorted((out / "rejected").glob("*.parquet"))
    rows = pl.concat([pl.read_parquet(f).select("id", "text") for f in files])
    assert rows.height == 22 and rows["id"].n_unique() == 22
    assert set(texts[:10] + texts[20:]) <= set(rows["text"].to_list())


def test_zero_filled_tail_keeps_the_lines_before_it(tmp_path):
    """A JSONL file whose end was zero-filled (a crash): its lines are read, the NUL run is one
    bad record; a binary header (NUL in the first bytes) is still binary."""
    lines = "".join(json.dumps({"text": f"document {i} of a file"}) + "\n" for i in range(50))
    path = tmp_path / "crashed.jsonl"
    path.write_bytes(lines.encode() + bytes(512))
    errors = ReadErrors()
    docs = list(iter_documents(str(path), errors=errors))
    assert len(docs) == 50
    assert errors.by_file() == {str(path): {"bad_json": 1}}
    assert looks_binary(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR") == "NUL byte at offset 8"


def test_hidden_folders_under_a_glob_are_not_inputs(tmp_path):
    write_docs(tmp_path / "in" / "a.jsonl", 2, "a")
    write_docs(tmp_path / "in" / ".hidden" / "b.jsonl", 2, "b")
    (tmp_path / "in" / ".git").mkdir()
    (tmp_path / "in" / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    for pattern in ("in/*", "in/**", "in"):
        shards, skipped = plan_shards(load_config(inputs=[str(tmp_path / pattern)]))
        assert [Path(s["url"]).name for s in shards] == ["a.jsonl"], pattern
        assert skipped == [], pattern


def test_only_unsupported_files_is_an_error_naming_them(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "table.csv").write_text("a,b\n")
    with pytest.raises(ConfigError, match=r"no readable input files: 1 skipped \(.*table.csv"):
        plan_shards(load_config(inputs=[str(tmp_path / "in")]))
