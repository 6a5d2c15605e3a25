"""Parquet shard writer with an explicit schema, byte-sized row groups and files, and a manifest.

Files are written under a temporary name and renamed when complete, so a crash never leaves a
half-written file under its final name; names are deterministic (``{prefix}-{k:05d}.parquet``),
so a rerun overwrites exactly what an interrupted run began. Row groups hold about
``row_group_bytes`` of text (``n_bytes``), files about ``file_bytes``; both boundaries depend
only on the rows and their order, not on how they were batched.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.paths import temp_path

__all__ = [
    "FILTER_SCORE_FIELDS",
    "OUTPUT_SCHEMA",
    "REJECTED_SCHEMA",
    "STAGING_SCHEMA",
    "ShardWriter",
    "conform",
    "file_sha256",
]

#: score columns of the Gopher / FineWeb filters (:mod:`pipeline.filters`): the signals their
#: thresholds are tested against, null where the filter did not compute them (a row rejected by
#: an earlier stage, a filter off for the row's language, the ``datatrove`` implementation, a
#: repetition check a row did not reach, an undefined ratio). Shares are of the document's
#: characters / words / lines; words are whitespace-separated (eojeol for Korean).
FILTER_SCORE_FIELDS: dict[str, pa.DataType] = {
    # FineWebQuality
    "fineweb_line_punct_ratio": pa.float32(),  # non-blank lines ending with terminal punctuation
    "fineweb_short_line_ratio": pa.float32(),  # non-blank lines <= short_line_length chars
    "fineweb_char_dup_ratio": pa.float32(),  # chars of duplicate lines / chars (no newlines)
    "fineweb_list_ratio": pa.float32(),  # newlines per word
    # GopherRepetition
    "gopher_rep_dup_line_frac": pa.float32(),  # duplicate lines / lines
    "gopher_rep_dup_line_char_frac": pa.float32(),  # chars of duplicate lines / chars
    "gopher_rep_top_2gram_frac": pa.float32(),  # chars of the most frequent 2-gram / chars
    "gopher_rep_dup_5gram_frac": pa.float32(),  # chars in duplicated 5-grams / chars
    "gopher_rep_dup_10gram_frac": pa.float32(),  # chars in duplicated 10-grams / chars
    # GopherQuality
    "gopher_words": pa.int32(),  # words that are not only punctuation
    "gopher_mean_word_len": pa.float32(),  # their mean length (characters)
    "gopher_symbol_word_ratio": pa.float32(),  # max("#" count, ellipsis count) per word
    "gopher_bullet_lines_frac": pa.float32(),  # lines starting with a bullet or "-"
    "gopher_ellipsis_lines_frac": pa.float32(),  # lines ending with an ellipsis
    "gopher_alpha_words_frac": pa.float32(),  # words with an alphabetic character
    "gopher_stop_words": pa.int32(),  # distinct stop words present
}

_FILTER_SCORES = [pa.field(name, typ) for name, typ in FILTER_SCORE_FIELDS.items()]

OUTPUT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("lang", pa.string()),
        ("lang_score", pa.float32()),
        ("source", pa.string()),
        ("n_bytes", pa.int64()),
        ("orig_id", pa.string()),
        ("hangul_share", pa.float32()),
        ("jamo_ratio", pa.float32()),
        ("spam_terms", pa.int32()),
        ("boilerplate_lines", pa.int32()),
        ("pii_count", pa.int32()),
        *_FILTER_SCORES,
        ("text_hash", pa.uint64()),
        ("dup_cluster_id", pa.int64()),
        ("dup_cluster_size", pa.int32()),
    ]
)

#: what the per-shard stage keeps for the dedup/write stage (no cluster columns yet)
STAGING_SCHEMA = pa.schema(
    [f for f in OUTPUT_SCHEMA if not f.name.startswith("dup_cluster")]
    + [pa.field("band_keys", pa.list_(pa.uint64()))]
)

REJECTED_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("orig_id", pa.string()),
        ("text", pa.string()),
        ("source", pa.string()),
        ("lang", pa.string()),
        ("lang_score", pa.float32()),
        ("n_bytes", pa.int64()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        *_FILTER_SCORES,  # null for rows rejected before the filters ran
        ("dup_cluster_id", pa.int64()),
        ("dup_cluster_size", pa.int32()),
    ]
)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns, in order: missing ones are nulls, others
    cast (a fixed-size list becomes a list)."""
    cols = []
    for f in schema:
        if f.name in table.column_names:
            col = table[f.name]
            if col.type != f.type:
                col = pc.cast(col, f.type)
            cols.append(col)
        else:
            cols.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=schema)


def file_sha256(fs, path: str) -> str:
    h = hashlib.sha256()
    with fs.open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class ShardWriter:
    """Writes tables (in order) into ``{folder}/{prefix}-{k:05d}.parquet`` files.

    ``close()`` returns the files written: ``{"path", "rows", "bytes", "text_bytes",
    "sha256"}`` (``path`` relative to ``root``).
    """

    def __init__(
        self,
        fs,
        root: str,
        folder: str,
        prefix: str,
        schema: pa.Schema = OUTPUT_SCHEMA,
        row_group_bytes: int = 128 << 20,
        file_bytes: int = 512 << 20,
        compression: str = "zstd",
        compression_level: int | None = 3,
    ) -> None:
        self.fs, self.root, self.folder, self.prefix = fs, root.rstrip("/"), folder, prefix
        self.schema = schema
        self.row_group_bytes = max(1, int(row_group_bytes))
        self.file_bytes = max(1, int(file_bytes))
        self.compression, self.level = compression, compression_level
        self._buf: list[pa.Table] = []
        self._buf_bytes = 0
        self._writer: pq.ParquetWriter | None = None
        self._fh = None
        self._file_rows = 0
        self._file_bytes = 0
        self._k = 0
        self.files: list[dict[str, Any]] = []

    def _rel(self, k: int) -> str:
        name = f"{self.prefix}-{k:05d}.parquet"
        return posixpath.join(self.folder, name) if self.folder else name

    def _open(self) -> None:
        rel = self._rel(self._k)
        path = f"{self.root}/{rel}"
        self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
        self._tmp = temp_path(path)
        self._fh = self.fs.open(self._tmp, "wb")
        self._writer = pq.ParquetWriter(
            self._fh,
            self.schema,
            compression=self.compression,
            compression_level=self.level,
            write_statistics=["id", "lang", "source", "n_bytes"],
        )
        self._file_rows = 0
        self._file_bytes = 0

    def _flush_group(self) -> None:
        if not self._buf:
            return
        if self._writer is None:
            self._open()
        group = pa.concat_tables(self._buf)
        self._writer.write_table(group, row_group_size=max(1, group.num_rows))
        self._file_rows += group.num_rows
        self._file_bytes += self._buf_bytes
        self._buf, self._buf_bytes = [], 0
        if self._file_bytes >= self.file_bytes:
            self._close_file()

    def _close_file(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        self._fh.close()
        rel = self._rel(self._k)
        path = f"{self.root}/{rel}"
        self.fs.mv(self._tmp, path)
        info = self.fs.info(path)
        self.files.append(
            {
                "path": rel,
                "rows": self._file_rows,
                "bytes": int(info["size"]),
                "text_bytes": self._file_bytes,
                "sha256": file_sha256(self.fs, path),
            }
        )
        self._writer = self._fh = None
        self._k += 1

    def write(self, table: pa.Table) -> None:
        """Append rows (conformed to the schema); row groups/files are cut at row boundaries
        once their text bytes reach the limits."""
        table = conform(table, self.schema)
        if not table.num_rows:
            return
        nbytes = pc.fill_null(table["n_bytes"], 0).to_numpy()
        start = 0
        for i, b in enumerate(nbytes):
            self._buf_bytes += int(b)
            if self._buf_bytes >= self.row_group_bytes:
                self._buf.append(table.slice(start, i + 1 - start))
                start = i + 1
                self._flush_group()
        if start < table.num_rows:
            self._buf.append(table.slice(start))

    def write_all(self, tables: Iterable[pa.Table]) -> list[dict[str, Any]]:
        for t in tables:
            self.write(t)
        return self.close()

    def close(self) -> list[dict[str, Any]]:
        self._flush_group()
        self._close_file()
        return self.files


def iter_parquet(fs, path: str, batch_size: int = 4096) -> Iterator[pa.Table]:
    """Record batches of a Parquet file as tables."""
    with fs.open(path, "rb") as fh:
        pf = pq.ParquetFile(fh)
        for b in pf.iter_batches(batch_size=batch_size):
            yield pa.Table.from_batches([b])
