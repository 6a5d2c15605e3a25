"""Tests for pipeline.readers: formats, URLs, path expansion and bad input."""

from __future__ import annotations

import bz2
import gzip
import json
import logging
import lzma
import pickle
import random
import uuid
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from pipeline.readers import (
    BAD_JSON,
    CORRUPT,
    EMPTY,
    INVALID_UTF8,
    LONE_SURROGATE,
    MAX_TEXT_DOC_BYTES,
    MISSING_TEXT,
    NO_DOCUMENTS,
    NON_STRING_TEXT,
    TRUNCATED,
    UNREADABLE,
    Document,
    ReadErrors,
    decode_utf8,
    detect_format,
    expand_paths,
    is_supported,
    iter_documents,
    strip_known_extensions,
)

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"

RECORDS = [
    {"id": "a", "text": "Hello world.", "source": "s"},
    {"id": "b", "text": "Zweite Zeile: äöü ß", "source": "s"},
    {"id": "c", "text": "日本語のテキスト\n二行目", "source": "s"},
    {"id": "d", "text": "def f(x):\n    return x\n", "source": "s"},
]
TEXTS = [r["text"] for r in RECORDS]


def jsonl_bytes(records) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n" for r in records)


def write_parquet(path, records) -> None:
    table = pa.table({k: [r[k] for r in records] for k in ("id", "text", "source")})
    pq.write_table(table, str(path), row_group_size=2)


def noisy_text(seed: int, n_words: int) -> str:
    """Poorly compressible text (so that a cut compressed file still holds whole blocks)."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return " ".join("".join(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(n_words))


def read_all(url, **kw) -> tuple[list[Document], ReadErrors]:
    errors = ReadErrors()
    return list(iter_documents(url, errors=errors, **kw)), errors


@pytest.fixture
def memfs():
    fs = fsspec.filesystem("memory")
    root = f"/t-{uuid.uuid4().hex}"
    yield fs, root
    if fs.exists(root):
        fs.rm(root, recursive=True)


# ----------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    "name, writer",
    [
        ("a.jsonl", lambda p: p.write_bytes(jsonl_bytes(RECORDS))),
        ("a.json", lambda p: p.write_bytes(jsonl_bytes(RECORDS))),
        ("a.jsonl.gz", lambda p: p.write_bytes(gzip.compress(jsonl_bytes(RECORDS)))),
        (
            "a.jsonl.zst",
            lambda p: p.write_bytes(zstandard.ZstdCompressor().compress(jsonl_bytes(RECORDS))),
        ),
        ("a.jsonl.bz2", lambda p: p.write_bytes(bz2.compress(jsonl_bytes(RECORDS)))),
        ("a.parquet", lambda p: write_parquet(p, RECORDS)),
    ],
)
def test_record_formats_yield_same_documents(tmp_path, name, writer):
    path = tmp_path / name
    writer(path)
    docs, errors = read_all(str(path))
    assert [d.text for d in docs] == TEXTS
    assert [d.id for d in docs] == ["a", "b", "c", "d"]
    assert all(d.source == str(path) for d in docs)
    assert [d.n_bytes for d in docs] == [len(t.encode("utf-8")) for t in TEXTS]
    assert not errors, errors.warnings()


def test_txt_paragraphs(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"first line\r\nsecond line\r\n\n \t\n\nnext para\nmore\n\n\nlast")
    docs, errors = read_all(str(path))
    assert [d.text for d in docs] == ["first line\nsecond line", "next para\nmore", "last"]
    assert [d.id for d in docs] == [f"{path}#0", f"{path}#1", f"{path}#2"]
    assert not errors


def test_txt_long_paragraph_split_at_char_boundary(tmp_path):
    path = tmp_path / "long.txt"
    # 1.5 MiB of two-byte characters on one line: must split without breaking a character
    n_chars = (MAX_TEXT_DOC_BYTES * 3 // 2) // 2
    path.write_bytes(("é" * n_chars).encode("utf-8") + b"\n\nshort\n")
    docs, errors = read_all(str(path))
    assert len(docs) == 3
    assert all(d.n_bytes <= MAX_TEXT_DOC_BYTES for d in docs)
    assert docs[0].text + docs[1].text == "é" * n_chars
    assert docs[2].text == "short"
    assert errors.count(INVALID_UTF8) == 0


def test_zstd_multiple_frames_read_completely(tmp_path):
    path = tmp_path / "multi.jsonl.zst"
    c = zstandard.ZstdCompressor()
    path.write_bytes(c.compress(jsonl_bytes(RECORDS[:2])) + c.compress(jsonl_bytes(RECORDS[2:])))
    docs, errors = read_all(str(path))
    assert [d.text for d in docs] == TEXTS
    assert not errors


def test_parquet_reads_many_batches(tmp_path):
    path = tmp_path / "big.parquet"
    n = 5000
    table = pa.table({"text": [f"doc {i}" for i in range(n)]})
    pq.write_table(table, str(path), row_group_size=700)
    docs, errors = read_all(str(path))
    assert [d.text for d in docs] == [f"doc {i}" for i in range(n)]
    assert docs[10].id == f"{path}#10"  # no id column: url#row
    assert not errors


def test_custom_text_field(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(jsonl_bytes([{"content": "x y", "id": 7}]))
    docs, _ = read_all(str(path), text_field="content")
    assert [(d.id, d.text) for d in docs] == [("7", "x y")]


def test_real_sample_file_reads_cleanly():
    url = str(SAMPLE / "en.jsonl.gz")
    docs, errors = read_all(url)
    assert len(docs) == 158
    assert 290_000 < sum(d.n_bytes for d in docs) <= 300_000
    assert not errors


def test_unsupported_extension_raises_immediately(tmp_path):
    with pytest.raises(ValueError, match=r"notes\.md"):
        iter_documents(str(tmp_path / "notes.md"))


def test_detect_format_and_extensions():
    assert detect_format("x/en.jsonl.gz") == ("jsonl", "gzip")
    assert detect_format("s3://b/x.JSONL.ZST") == ("jsonl", "zstd")
    assert detect_format("a.txt") == ("txt", None)
    assert detect_format("a.parquet") == ("parquet", None)
    assert not is_supported("a.parquet.gz")
    assert not is_supported("README.md")
    assert not is_supported(".jsonl")
    assert strip_known_extensions("dir/code-python.jsonl.gz") == "code-python"
    assert strip_known_extensions("en.parquet") == "en"
    assert strip_known_extensions("notes.md") == "notes.md"


# ----------------------------------------------------------------------------- URLs and paths


def test_memory_url(memfs):
    fs, root = memfs
    fs.pipe(f"{root}/a.jsonl", jsonl_bytes(RECORDS))
    fs.pipe(f"{root}/b.jsonl.gz", gzip.compress(jsonl_bytes(RECORDS[:1])))
    url = f"memory://{root}/a.jsonl"
    docs, errors = read_all(url)
    assert [d.text for d in docs] == TEXTS
    assert not errors
    assert docs[0].source == url
    urls = expand_paths(f"memory://{root}")
    assert [u.rsplit("/", 1)[1] for u in urls] == ["a.jsonl", "b.jsonl.gz"]
    assert all(u.startswith("memory://") for u in urls)
    docs_b, _ = read_all(urls[1])
    assert [d.text for d in docs_b] == TEXTS[:1]
    assert expand_paths(f"memory://{root}/*.gz") == [urls[1]]


def make_tree(root: Path) -> None:
    (root / "sub" / "deep").mkdir(parents=True)
    (root / ".hidden").mkdir()
    for rel in ["b.jsonl", "a.txt", "sub/c.jsonl.gz", "sub/deep/d.parquet", ".hidden/e.jsonl"]:
        (root / rel).write_bytes(b"x")
    (root / "README.md").write_text("not data")
    (root / "sub" / "_SUCCESS").write_text("")


def test_expand_folder_recursive_sorted(tmp_path):
    make_tree(tmp_path)
    got = expand_paths(str(tmp_path))
    rel = [str(Path(u).relative_to(tmp_path)) for u in got]
    assert rel == ["a.txt", "b.jsonl", "sub/c.jsonl.gz", "sub/deep/d.parquet"]
    assert expand_paths(str(tmp_path)) == got  # deterministic


def test_expand_globs(tmp_path):
    make_tree(tmp_path)
    rec = expand_paths(str(tmp_path / "**" / "*.jsonl*"))
    rel = [str(Path(u).relative_to(tmp_path)) for u in rec]
    assert "b.jsonl" in rel and "sub/c.jsonl.gz" in rel
    assert all(r.endswith((".jsonl", ".jsonl.gz")) for r in rel)
    top = expand_paths(str(tmp_path / "*"))  # README.md filtered, sub/ expanded
    top_rel = {str(Path(u).relative_to(tmp_path)) for u in top}
    assert {"a.txt", "b.jsonl", "sub/c.jsonl.gz", "sub/deep/d.parquet"} <= top_rel
    assert "README.md" not in top_rel


def test_expand_list_keeps_order_and_dedups(tmp_path):
    make_tree(tmp_path)
    b, a = str(tmp_path / "b.jsonl"), str(tmp_path / "a.txt")
    assert expand_paths([b, a, b, str(tmp_path / "*.txt")]) == [b, a]


def test_expand_missing_raises_naming_pattern(tmp_path):
    pattern = str(tmp_path / "nothing" / "*.jsonl")
    with pytest.raises(FileNotFoundError, match="nothing"):
        expand_paths(pattern)
    with pytest.raises(FileNotFoundError, match=r"missing\.jsonl"):
        expand_paths(str(tmp_path / "missing.jsonl"))
    (tmp_path / "only.md").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"\*\.md"):
        expand_paths(str(tmp_path / "*.md"))
    with pytest.raises(ValueError, match=r"only\.md"):
        expand_paths(str(tmp_path / "only.md"))


# ----------------------------------------------------------------------------- bad input


def test_invalid_utf8_replaced_and_counted(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"id": "x", "text": "ok \xff\xfe end"}\n{"id": "y", "text": "fine"}\n')
    docs, errors = read_all(str(path))
    assert [d.text for d in docs] == ["ok \ufffd\ufffd end", "fine"]
    assert errors.count(INVALID_UTF8, str(path)) == 2
    assert errors.examples(str(path), INVALID_UTF8) == ["line 1"]
    assert any(str(path) in w and "invalid UTF-8" in w for w in errors.warnings())


def test_invalid_utf8_in_txt(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"caf\xc3 au lait\n\xe6\x97\xa5\xe6\x9c")  # lone lead byte; cut sequence
    docs, errors = read_all(str(path))
    assert [d.text for d in docs] == ["caf\ufffd au lait\n日\ufffd"]
    assert errors.count(INVALID_UTF8, str(path)) == 3  # 1 lone byte + 2-byte cut sequence
    assert decode_utf8(b"a\xffb\xc3") == ("a\ufffdb\ufffd", 2)
    assert decode_utf8("日本".encode()) == ("日本", 0)


def test_malformed_json_missing_text_and_types(tmp_path):
    path = tmp_path / "mixed.jsonl"
    lines = [
        b'{"id": 1, "text": "good"}',
        b"{not json",
        b"",
        b"[1, 2]",
        b'{"id": 2, "body": "no text field"}',
        b'{"id": 3, "text": null}',
        b'{"id": 4, "text": 42}',
        b'{"id": 5, "text": ""}',
        b'{"id": 6, "text": "lone \\ud800 surrogate"}',
        b'{"id": 7, "text": "last"}',
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    docs, errors = read_all(str(path))
    assert [(d.id, d.text) for d in docs] == [
        ("1", "good"),
        ("5", ""),
        ("6", "lone \ufffd surrogate"),
        ("7", "last"),
    ]
    url = str(path)
    assert errors.count(BAD_JSON, url) == 2
    ex = errors.examples(url, BAD_JSON)
    assert ex[0].startswith("line 2:") and ex[1].startswith("line 4:")
    assert errors.count(MISSING_TEXT, url) == 2
    assert errors.count(NON_STRING_TEXT, url) == 1
    assert errors.count(EMPTY, url) == 1
    assert errors.count(LONE_SURROGATE, url) == 1
    assert docs[2].n_bytes == len("lone \ufffd surrogate".encode())
    text = "\n".join(errors.warnings())
    assert "malformed JSON" in text and "line 2" in text and url in text
    assert "without a text field" in text


def test_truncated_gzip_yields_prefix_and_records_error(tmp_path):
    records = [{"id": str(i), "text": noisy_text(i, 300)} for i in range(300)]
    full = gzip.compress(jsonl_bytes(records))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(full[: len(full) // 2])
    docs, errors = read_all(str(path))
    assert 0 < len(docs) < len(records)
    assert [d.id for d in docs] == [str(i) for i in range(len(docs))]
    assert all(d.text == records[int(d.id)]["text"] for d in docs)
    assert errors.count(TRUNCATED, str(path)) == 1
    assert errors.has_file_errors
    assert errors.count(BAD_JSON) == 0  # the cut-off last line is reported with the truncation
    warning = [w for w in errors.warnings() if "truncated" in w]
    assert len(warning) == 1 and str(path) in warning[0] and "incomplete line" in warning[0]


def test_truncated_zstd_yields_prefix_and_records_error(tmp_path):
    records = [{"id": str(i), "text": noisy_text(i, 600)} for i in range(600)]
    full = zstandard.ZstdCompressor().compress(jsonl_bytes(records))
    path = tmp_path / "cut.jsonl.zst"
    path.write_bytes(full[: len(full) * 2 // 3])
    docs, errors = read_all(str(path))
    assert 0 < len(docs) < len(records)
    assert [d.text for d in docs] == [r["text"] for r in records[: len(docs)]]
    assert errors.count(TRUNCATED, str(path)) == 1
    assert any(str(path) in w and "truncated" in w for w in errors.warnings())


def test_garbage_gzip_recorded_as_corrupt(tmp_path):
    path = tmp_path / "notgz.jsonl.gz"
    path.write_bytes(b"this is not gzip data at all\n")
    docs, errors = read_all(str(path))
    assert docs == []
    assert errors.count(CORRUPT, str(path)) == 1


@pytest.mark.parametrize("damage", ["garbage", "chopped"])
def test_corrupt_parquet_recorded(tmp_path, damage):
    path = tmp_path / "bad.parquet"
    if damage == "garbage":
        path.write_bytes(b"PAR1" + b"\x00garbage" * 50)
    else:
        write_parquet(path, RECORDS)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) - 20])
    docs, errors = read_all(str(path))
    assert docs == []
    assert errors.count(CORRUPT, str(path)) == 1
    (line,) = errors.warnings()
    assert str(path) in line and "corrupt" in line


def test_parquet_missing_text_column(tmp_path):
    path = tmp_path / "notext.parquet"
    pq.write_table(pa.table({"body": ["a", "b", "c"]}), str(path))
    docs, errors = read_all(str(path))
    assert docs == []
    assert errors.count(MISSING_TEXT, str(path)) == 3
    assert "no 'text' column" in errors.examples(str(path), MISSING_TEXT)[0]


def test_parquet_nulls_and_empty(tmp_path):
    path = tmp_path / "n.parquet"
    pq.write_table(pa.table({"text": ["a", None, ""]}), str(path))
    docs, errors = read_all(str(path))
    assert [d.text for d in docs] == ["a", ""]
    assert errors.count(MISSING_TEXT, str(path)) == 1
    assert errors.count(EMPTY, str(path)) == 1


def test_missing_file_recorded_not_raised(tmp_path):
    url = str(tmp_path / "gone.jsonl")
    docs, errors = read_all(url)
    assert docs == []
    assert errors.count(UNREADABLE, url) == 1
    assert errors.count(NO_DOCUMENTS, url) == 0


def test_empty_file_reported(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    docs, errors = read_all(str(path))
    assert docs == []
    assert errors.count(NO_DOCUMENTS, str(path)) == 1


def test_early_stop_records_nothing(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(jsonl_bytes(RECORDS))
    errors = ReadErrors()
    gen = iter_documents(str(path), errors=errors)
    assert next(gen).text == TEXTS[0]
    gen.close()
    assert not errors


def test_without_collector_problems_are_logged(tmp_path, caplog):
    path = tmp_path / "b.jsonl"
    path.write_bytes(b'{"text": "x"}\n{broken\n')
    with caplog.at_level(logging.WARNING, logger="pipeline.readers"):
        docs = list(iter_documents(str(path)))
    assert [d.text for d in docs] == ["x"]
    assert any(
        str(path) in r.getMessage() and "malformed" in r.getMessage() for r in caplog.records
    )


def test_read_errors_merge_and_pickle():
    a, b = ReadErrors(max_examples=2), ReadErrors(max_examples=2)
    a.add("f1", BAD_JSON, "line 1")
    b.add("f1", BAD_JSON, "line 5")
    b.add("f1", BAD_JSON, "line 9")
    b.add("f2", TRUNCATED, "cut")
    a.merge(b)
    assert a.count(BAD_JSON, "f1") == 3
    assert a.examples("f1", BAD_JSON) == ["line 1", "line 5"]
    assert a.files() == ["f1", "f2"]
    assert a.files(TRUNCATED) == ["f2"]
    assert a.count() == 4
    lines = a.warnings()
    assert lines[0] == "f1: 3 malformed JSON line(s) skipped (line 1; line 5 ...)"
    assert lines[1].startswith("f2: truncated")
    c = pickle.loads(pickle.dumps(a))
    assert c.by_file() == a.by_file() and c.warnings() == lines


def test_gzip_multi_member_xz_and_padding(tmp_path):
    gz = tmp_path / "multi.jsonl.gz"
    gz.write_bytes(
        gzip.compress(jsonl_bytes(RECORDS[:1]))
        + gzip.compress(jsonl_bytes(RECORDS[1:]))
        + b"\x00" * 16
    )
    docs, errors = read_all(str(gz))
    assert [d.text for d in docs] == TEXTS
    assert not errors
    xz = tmp_path / "a.jsonl.xz"
    xz.write_bytes(lzma.compress(jsonl_bytes(RECORDS)))
    docs, errors = read_all(str(xz))
    assert [d.text for d in docs] == TEXTS
    assert not errors


def test_trailing_garbage_after_gzip_is_reported(tmp_path):
    path = tmp_path / "tail.jsonl.gz"
    path.write_bytes(gzip.compress(jsonl_bytes(RECORDS)) + b"garbage")
    docs, errors = read_all(str(path))
    assert [d.text for d in docs] == TEXTS  # everything before the garbage
    assert errors.count(CORRUPT, str(path)) == 1


def test_highly_compressed_text_streams(tmp_path):
    line = b"the same line of text, again and again\n"
    raw = line * 200_000  # 7.8 MB of text, a few KB compressed
    path = tmp_path / "rep.txt.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(raw))
    docs, errors = read_all(str(path))
    assert sum(d.n_bytes for d in docs) == len(raw) - len(docs)  # one "\n" dropped per doc
    assert all(d.n_bytes <= MAX_TEXT_DOC_BYTES for d in docs)
    assert len(docs) == 8
    assert not errors


def make_pipeline_output(root: Path, files: list[str]) -> None:
    """The layout `mixtrace pipeline run` leaves: data files, rejected documents, report,
    manifest (listing the data files) and the _SUCCESS marker."""
    for rel in [*files, "data/part-stale.parquet", "rejected/part-00000-clean.parquet"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    (root / "report.json").write_text("{}")
    (root / "manifest.json").write_text(json.dumps({"files": [{"path": f} for f in files]}))
    (root / "_SUCCESS").write_text("{}")


def test_expand_pipeline_output_gives_its_manifest_files(tmp_path):
    make_pipeline_output(tmp_path / "es", ["data/part-00000-es-00000.parquet"])
    make_pipeline_output(tmp_path / "fr", ["data/part-00001.parquet", "data/part-00000.parquet"])
    (tmp_path / "extra.jsonl").write_bytes(b"x")
    rel = [str(Path(u).relative_to(tmp_path)) for u in expand_paths(str(tmp_path / "es"))]
    assert rel == ["es/data/part-00000-es-00000.parquet"]  # no report, manifest, rejected, stale
    rel = [str(Path(u).relative_to(tmp_path)) for u in expand_paths(str(tmp_path))]
    assert rel == [
        "es/data/part-00000-es-00000.parquet",
        "extra.jsonl",
        "fr/data/part-00000.parquet",
        "fr/data/part-00001.parquet",
    ]
    (tmp_path / "fr" / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"fr/manifest\.json"):
        expand_paths(str(tmp_path))
