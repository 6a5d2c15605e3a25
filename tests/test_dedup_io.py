"""Dedup partitions are saved with per-shard offsets; a write task reads its own slice."""

from __future__ import annotations

import fsspec
import numpy as np
import pytest

from pipeline.executor import _save_by_shard, _save_npy, _shard_rows


def _nodes(rng, n_shards: int, n: int) -> np.ndarray:
    shard = rng.integers(0, n_shards, n).astype(np.int64)
    row = rng.integers(0, 5_000, n).astype(np.int64)
    return np.unique((shard << np.int64(32)) | row)


@pytest.mark.parametrize("protocol", ["file", "memory"])
def test_each_shard_reads_exactly_its_rows(tmp_path, protocol):
    rng = np.random.default_rng(0)
    fs = fsspec.filesystem(protocol)
    root = str(tmp_path) if protocol == "file" else f"/dedup-io-{tmp_path.name}"
    n_shards = 7
    nodes = _nodes(rng, n_shards - 1, 3_000)  # the last shard has no rows
    rows = np.stack([nodes, rng.integers(0, 1 << 40, len(nodes)), rng.integers(2, 9, len(nodes))])
    rows = rows.T.copy()
    _save_by_shard(fs, f"{root}/clusters-0000.npy", rows, n_shards)
    _save_by_shard(fs, f"{root}/exact-0000.npy", nodes, n_shards)
    got_rows, got_nodes = [], []
    for s in range(n_shards):
        lo, hi = np.int64(s) << np.int64(32), np.int64(s + 1) << np.int64(32)
        r = _shard_rows(fs, f"{root}/clusters-0000.npy", s, np.empty((0, 3), np.int64))
        x = _shard_rows(fs, f"{root}/exact-0000.npy", s, np.empty(0, np.int64))
        assert np.array_equal(r, rows[(rows[:, 0] >= lo) & (rows[:, 0] < hi)])
        assert np.array_equal(x, nodes[(nodes >= lo) & (nodes < hi)])
        got_rows.append(r)
        got_nodes.append(x)
    assert len(got_rows[-1]) == 0 and sum(map(len, got_nodes)) == len(nodes)
    assert np.array_equal(np.concatenate(got_rows), rows)


def test_missing_partition_is_empty_but_missing_offsets_is_an_error(tmp_path):
    fs = fsspec.filesystem("file")
    empty = np.empty(0, np.int64)
    assert _shard_rows(fs, f"{tmp_path}/exact-0001.npy", 0, empty) is empty
    _save_npy(fs, f"{tmp_path}/exact-0002.npy", np.arange(3, dtype=np.int64))
    with pytest.raises(RuntimeError, match="no shard offsets"):
        _shard_rows(fs, f"{tmp_path}/exact-0002.npy", 0, empty)
