"""Runs the pipeline on Ray: per-shard clean tasks, distributed dedup, per-shard writers.

Layout of an output folder ``DIR`` (local path or fsspec URL)::

    DIR/data/part-<shard>-00000.parquet      kept documents (or data/<lang>/... when partitioned)
    DIR/rejected/part-<shard>-clean.parquet   documents removed by a clean stage (stage, reason)
    DIR/rejected/part-<shard>-dedup.parquet   duplicates removed by dedup
    DIR/manifest.json  DIR/report.json  DIR/funnel.png  DIR/_SUCCESS
    DIR/_work/...                             staging and completion markers (removed at the end)

Phases (Ray tasks; the driver only schedules and merges small JSON stats):

1. **clean**, one task per input file (a *shard*): stream the documents in Arrow batches
   through the steps (normalize ... PII, dedup signatures); write the kept rows to a staging
   Parquet, the rejected ones to ``rejected/``, the band/exact keys into hash partitions; then a
   completion marker ``_work/clean/<shard>.json`` holding the shard's stats.
2. **dedup**: one task per partition builds star edges from equal keys, then the connected
   components run as rounds of partitioned Ray tasks (:func:`pipeline.dedup.components_ray`);
   each partition's ``node -> cluster`` table is written by its task; marker ``_work/dedup.json``.
3. **write**, one task per shard: join the cluster table, drop non-representatives into
   ``rejected/``, write the kept rows with :class:`pipeline.writer.ShardWriter`; marker
   ``_work/write/<shard>.json`` with the files and their sha256.

Resumption: a rerun with the same inputs and config skips every shard/phase whose marker
exists; every file has a deterministic name and is renamed into place only when complete, so
the outputs of an interrupted-then-resumed run are byte-identical to an uninterrupted one.
A different config or input list in an existing ``DIR`` is refused (``overwrite=True`` starts
afresh). Ray tasks are used rather than Ray Data: a shard is the unit of resumption, and on
small inputs Ray Data's planning costs seconds per stage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import time
from collections.abc import Callable, Mapping
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config import ConfigError, build_steps, fingerprint
from pipeline.paths import safe_component, temp_path
from pipeline.readers import (
    MANIFEST,
    SUCCESS,
    ReadErrors,
    expand_inputs,
    iter_documents,
    strip_known_extensions,
)
from pipeline.report import build_report, dumps, write_funnel_png
from pipeline.steps import StepStats
from pipeline.writer import (
    OUTPUT_SCHEMA,
    REJECTED_SCHEMA,
    STAGING_SCHEMA,
    ShardWriter,
    conform,
    iter_parquet,
)

__all__ = ["PipelineInterrupted", "plan_shards", "run_pipeline"]

logger = logging.getLogger(__name__)

WORK = "_work"
#: the layout of ids, staging and dedup files; part of a run's fingerprint, so that a run
#: begun by a version with another layout is refused instead of resumed into mixed output
#: (3: ids keyed by the input folder's name and the file's path below it, dedup tables with
#: per-shard offsets)
OUTPUT_FORMAT = 3


class PipelineInterrupted(RuntimeError):
    """Raised by ``stop_after_shards`` (tests of resumption)."""


def _fs(url: str):
    fs, path = fsspec.core.url_to_fs(url)
    return fs, path.rstrip("/")


def _write_json(fs, path: str, obj: Any) -> None:
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    tmp = temp_path(path)
    with fs.open(tmp, "w") as fh:
        fh.write(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")
    fs.mv(tmp, path)


def _finished_and_todo(fs, marker_dir: str, shards: list[dict[str, Any]]):
    """Results of the shards whose completion marker exists, and the shards still to run."""
    done: dict[str, dict[str, Any]] = {}
    todo = []
    for s in shards:
        m = f"{marker_dir}/{s['label']}.json"
        if fs.exists(m):
            done[s["label"]] = _read_json(fs, m)
        else:
            todo.append(s)
    return done, todo


def _read_json(fs, path: str) -> Any:
    with fs.open(path, "r") as fh:
        return json.load(fh)


def _save_npy(fs, path: str, arr: np.ndarray) -> None:
    import io

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    tmp = temp_path(path)
    with fs.open(tmp, "wb") as fh:
        fh.write(buf.getvalue())
    fs.mv(tmp, path)


def _load_npy(fs, path: str) -> np.ndarray:
    import io

    with fs.open(path, "rb") as fh:
        return np.load(io.BytesIO(fh.read()), allow_pickle=False)


def _load_npy_rows(fs, path: str, lo: int, hi: int) -> np.ndarray:
    """Rows ``lo:hi`` of a C-order ``.npy`` file, read with one ranged read (on object
    storage: a range request) instead of the whole file."""
    fmt = np.lib.format
    with fs.open(path, "rb") as fh:
        version = fmt.read_magic(fh)
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = read_header(fh)
        if fortran:
            raise ValueError(f"{path}: Fortran-order array")
        row = dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
        if not 0 <= lo <= hi <= shape[0]:
            raise ValueError(f"{path}: rows {lo}:{hi} outside its {shape[0]} rows")
        fh.seek(fh.tell() + lo * row)
        buf = fh.read((hi - lo) * row)
    if len(buf) != (hi - lo) * row:
        raise ValueError(f"{path}: truncated ({len(buf)} of {(hi - lo) * row} bytes of rows)")
    return np.frombuffer(buf, dtype).reshape((hi - lo, *shape[1:]))


def _save_by_shard(fs, path: str, arr: np.ndarray, n_shards: int) -> None:
    """``arr`` (sorted by node = ``shard << 32 | row``, in its first column when 2-D) and, in
    ``<path>.idx.npy``, the offset of each shard's first row: a write task then reads its own
    rows only (:func:`_shard_rows`), not every partition whole."""
    keys = arr[:, 0] if arr.ndim == 2 else arr
    bounds = np.arange(n_shards + 1, dtype=np.int64) << np.int64(32)
    _save_npy(fs, path, arr)
    _save_npy(fs, f"{path[: -len('.npy')]}.idx.npy", np.searchsorted(keys, bounds))


def _shard_rows(fs, path: str, index: int, empty: np.ndarray) -> np.ndarray:
    """Shard ``index``'s rows of a file saved by :func:`_save_by_shard` (``empty`` when the
    file does not exist: a partition without rows)."""
    idx = f"{path[: -len('.npy')]}.idx.npy"
    try:  # two offsets, not the whole index; no existence check first (a request each)
        offsets = _load_npy_rows(fs, idx, index, index + 2)
    except FileNotFoundError:
        if fs.exists(path):  # written by a version without offsets: its rows would be missed
            raise RuntimeError(
                f"{path}: no shard offsets ({idx}); rerun with --overwrite"
            ) from None
        return empty
    lo, hi = int(offsets[0]), int(offsets[1])
    return _load_npy_rows(fs, path, lo, hi) if hi > lo else empty


# --------------------------------------------------------------------------------------
# Planning


def _file_key(name: str) -> str:
    """A short stable key of a file name: 16 hex digits of its blake2b hash."""
    return hashlib.blake2b(name.encode("utf-8"), digest_size=8).hexdigest()


def plan_shards(cfg: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Input files -> shards (in config order) and skipped inputs (``{"path", "reason"}``:
    every unsupported file, named explicitly or found in a folder or glob).

    A shard's ``index`` and ``label`` follow the input order (they name its output files); its
    ``key`` names its documents, whose ids are ``"{source}/{key}/{ordinal:09d}"`` (ordinal: the
    document's position in its file) and do not depend on the other inputs:

    * ``key`` is a hash of the input folder's name (the folder given, or the fixed part of a
      glob) and the file's path below it -- ``ko/part-00000.jsonl`` -- so the same data
      mounted elsewhere or read through another protocol keeps its ids, and two folders of
      ``part-*`` files do not collide; for an explicitly named file it is its file name;
    * when an earlier shard already has the same ``source`` and ``key`` (the same folder name
      and relative path under the same source label, e.g. ``x/ko/part-0.jsonl`` and
      ``y/ko/part-0.jsonl``), the later one's key is the hash of its full URL instead. So ids
      are unique within a run, and adding or removing inputs changes no other file's ids --
      except that an added input which collides that way with a later one moves the later one
      to its URL key (set distinct ``source`` labels to rule that out).
    """
    shards: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    seen: set[str] = set()
    seen_skipped: set[str] = set()
    keys: set[tuple[str, str]] = set()
    for spec in cfg["inputs"]:
        try:
            found = expand_inputs(spec["path"])
        except ValueError as exc:  # e.g. a pipeline output below it with a broken manifest
            skipped.append({"path": str(spec["path"]), "reason": str(exc)})
            continue
        for entry in found.skipped:
            if entry["path"] not in seen_skipped:
                seen_skipped.add(entry["path"])
                skipped.append(entry)
        for f in found.files:
            url = f.url
            if url in seen:
                continue
            seen.add(url)
            stem = strip_known_extensions(url)
            source = spec["source"] or stem
            i = len(shards)
            if f.root is not None and f.rel is not None:
                key = _file_key(f"{posixpath.basename(f.root.rstrip('/'))}/{f.rel}")
            else:
                key = _file_key(posixpath.basename(url.rstrip("/")))
            if (source, key) in keys:
                key = _file_key(url)
            if (source, key) in keys:  # a hash collision: never seen, but ids must stay unique
                key = _file_key(f"{url}#{i}")
            keys.add((source, key))
            label = f"{i:05d}-" + safe_component(stem)[:60]
            shards.append(
                {
                    "index": i,
                    "label": label,
                    "url": url,
                    "key": key,
                    "source": source,
                    "text_field": spec["text_field"],
                    "id_field": spec["id_field"],
                    "lang": spec["lang"],
                }
            )
    if not shards:
        if not skipped:
            raise ConfigError("no inputs: give at least one input path")
        names = ", ".join(e["path"] for e in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        raise ConfigError(
            f"no readable input files: {len(skipped)} skipped ({names}): {skipped[0]['reason']}"
        )
    return shards, skipped


# --------------------------------------------------------------------------------------
# Phase 1: clean one shard


def _doc_batches(shard: Mapping[str, Any], batch_size: int, errors: ReadErrors):
    """The shard's documents as Arrow tables of at most ``batch_size`` rows; ids are
    ``"{source}/{key}/{ordinal:09d}"`` (see :func:`plan_shards`)."""
    ids, orig, texts, nbytes = [], [], [], []
    n = 0
    source = shard["source"]
    prefix = f"{source}/{shard.get('key') or _file_key(shard['url'])}/"

    def table():
        k = len(ids)
        return pa.table(
            {
                "id": pa.array(ids, pa.string()),
                "orig_id": pa.array(orig, pa.string()),
                "text": pa.array(texts, pa.string()),
                "source": pa.array([source] * k, pa.string()),
                "n_bytes": pa.array(nbytes, pa.int64()),
                "lang": pa.array([shard["lang"]] * k, pa.string()),
                "lang_score": pa.array([1.0 if shard["lang"] else None] * k, pa.float32()),
            }
        )

    for doc in iter_documents(
        shard["url"], text_field=shard["text_field"], id_field=shard["id_field"], errors=errors
    ):
        ids.append(f"{prefix}{n:09d}")
        orig.append(doc.id)
        texts.append(doc.text)
        nbytes.append(doc.n_bytes)
        n += 1
        if len(ids) >= batch_size:
            yield table()
            ids, orig, texts, nbytes = [], [], [], []
    if ids:
        yield table()


def clean_shard(shard: Mapping[str, Any], cfg: Mapping[str, Any], root_url: str) -> dict[str, Any]:
    """Phase 1 for one shard (runs inside a Ray task; usable without Ray)."""
    import pyarrow.parquet as pq

    cpu0 = time.process_time()
    fs, root = _fs(root_url)
    label = shard["label"]
    parts = int(cfg["executor"]["dedup_partitions"])
    steps = build_steps(cfg)
    errors = ReadErrors()
    n_in = b_in = 0
    stage_path = f"{root}/{WORK}/staging/{label}.parquet"
    rej_path = f"{root}/rejected/part-{label}-clean.parquet"
    fs.makedirs(posixpath.dirname(stage_path), exist_ok=True)
    write_rejected = cfg["writer"]["write_rejected"]
    if write_rejected:
        fs.makedirs(posixpath.dirname(rej_path), exist_ok=True)
    stage_tmp = temp_path(stage_path)
    sw_fh = fs.open(stage_tmp, "wb")
    sw = pq.ParquetWriter(sw_fh, STAGING_SCHEMA, compression="zstd")
    rw = rw_fh = None
    row = 0
    band_keys: list[np.ndarray] = []
    band_nodes: list[np.ndarray] = []
    exact_keys: list[np.ndarray] = []
    exact_nodes: list[np.ndarray] = []
    dd = cfg["stages"]["dedup"]
    dedup_on = dd["enabled"] and (dd["exact"] or dd["near"])
    rejected_rows = 0
    for batch in _doc_batches(shard, int(cfg["executor"]["batch_size"]), errors):
        n_in += batch.num_rows
        b_in += int(pc.sum(batch["n_bytes"]).as_py() or 0)
        rejected = []
        for step in steps:
            batch, rej = step(batch)
            if rej is not None:
                rejected.append(rej)
        if rejected and write_rejected:
            rt = pa.concat_tables([conform(r, REJECTED_SCHEMA) for r in rejected])
            if rw is None:
                rej_tmp = temp_path(rej_path)
                rw_fh = fs.open(rej_tmp, "wb")
                rw = pq.ParquetWriter(rw_fh, REJECTED_SCHEMA, compression="zstd")
            rw.write_table(rt)
            rejected_rows += rt.num_rows
        if batch.num_rows:
            nodes = (np.int64(shard["index"]) << np.int64(32)) + np.arange(
                row, row + batch.num_rows, dtype=np.int64
            )
            row += batch.num_rows
            if dedup_on and "text_hash" in batch.column_names:
                if dd["exact"]:
                    exact_keys.append(batch["text_hash"].to_numpy())
                    exact_nodes.append(nodes)
                if dd["near"]:
                    bk = batch["band_keys"]
                    valid = pc.is_valid(bk).to_numpy(zero_copy_only=False)
                    if valid.any():
                        flat = pc.list_flatten(pc.filter(bk, pa.array(valid))).to_numpy()
                        nb = len(flat) // int(valid.sum())
                        band_keys.append(flat)
                        band_nodes.append(np.repeat(nodes[valid], nb))
            sw.write_table(conform(batch, STAGING_SCHEMA))
    sw.close()
    sw_fh.close()
    fs.mv(stage_tmp, stage_path)
    if rw is not None:
        rw.close()
        rw_fh.close()
        fs.mv(rej_tmp, rej_path)
    if dedup_on:
        for kind, keys, nodes in (
            ("bands", band_keys, band_nodes),
            ("exact", exact_keys, exact_nodes),
        ):
            k = np.concatenate(keys) if keys else np.empty(0, np.uint64)
            v = np.concatenate(nodes) if nodes else np.empty(0, np.int64)
            p = (k % np.uint64(parts)).astype(np.int64)
            for i in range(parts):
                sel = p == i
                pair = np.stack([k[sel], v[sel].astype(np.uint64)], axis=1)
                _save_npy(fs, f"{root}/{WORK}/{kind}/p{i:04d}/{label}.npy", pair)
    stats = {
        "label": label,
        "url": shard["url"],
        "input_documents": n_in,
        "input_bytes": b_in,
        "staged_rows": row,
        "rejected_rows_written": rejected_rows,
        "steps": [s.stats.to_dict() for s in steps if s.name != "dedup_signatures"],
        "read_errors": _errors_to_json(errors),
        "cpu_seconds": round(time.process_time() - cpu0, 3),
    }
    _write_json(fs, f"{root}/{WORK}/clean/{label}.json", stats)
    return stats


def _errors_to_json(errors: ReadErrors) -> dict[str, Any]:
    return {
        "counts": errors.by_file(),
        "examples": {
            url: {r: errors.examples(url, r) for r in per} for url, per in errors.by_file().items()
        },
    }


def _errors_from_json(d: Mapping[str, Any], into: ReadErrors) -> None:
    for url, per in d["counts"].items():
        for reason, n in per.items():
            ex = d["examples"].get(url, {}).get(reason, [])
            other = ReadErrors()
            other.add(url, reason, ex[0] if ex else None, n)
            for e in ex[1:]:
                other._examples[url][reason].append(e)
            into.merge(other)


# --------------------------------------------------------------------------------------
# Phase 2: dedup


def _bucket_task(root_url: str, p: int, parts: int, n_shards: int):
    """Partition ``p``: band/exact keys -> star edges (shuffled by node) and exact duplicates."""
    from pipeline.dedup import bucket_edges, split_by_partition

    fs, root = _fs(root_url)
    edges_all = []
    exact_dups = np.empty(0, np.int64)
    for kind in ("bands", "exact"):
        folder = f"{root}/{WORK}/{kind}/p{p:04d}"
        files = sorted(fs.glob(f"{folder}/*.npy")) if fs.exists(folder) else []
        arrs = [_load_npy(fs, f) for f in files]
        arrs = [a for a in arrs if len(a)]
        if not arrs:
            continue
        pairs = np.concatenate(arrs)
        edges, members = bucket_edges(pairs[:, 0], pairs[:, 1].astype(np.int64))
        edges_all.append(edges)
        if kind == "exact":
            exact_dups = members
    _save_by_shard(fs, f"{root}/{WORK}/dedup/exact-{p:04d}.npy", np.sort(exact_dups), n_shards)
    edges = np.concatenate(edges_all) if edges_all else np.empty((0, 2), np.int64)
    edges = edges[edges[:, 0] != edges[:, 1]]
    both = np.unique(np.concatenate([edges, edges[:, ::-1]]), axis=0) if len(edges) else edges
    return (*split_by_partition(both, parts), len(edges))


def _save_clusters_task(root_url: str, p: int, n_shards: int, rows: np.ndarray) -> int:
    fs, root = _fs(root_url)
    _save_by_shard(fs, f"{root}/{WORK}/dedup/clusters-{p:04d}.npy", rows, n_shards)
    return len(rows)


def run_dedup(root_url: str, parts: int, n_shards: int) -> dict[str, Any]:
    import ray

    from pipeline.dedup import components_ray

    t0 = time.perf_counter()
    bucket = ray.remote(_bucket_task).options(num_returns=parts + 1)
    outs = [bucket.remote(root_url, p, parts, n_shards) for p in range(parts)]
    n_edges = sum(ray.get([o[parts] for o in outs]))
    edge_parts = [o[:parts] for o in outs]
    assign_refs = components_ray(edge_parts, parts)
    save = ray.remote(_save_clusters_task)
    n_nodes = sum(
        ray.get([save.remote(root_url, p, n_shards, r) for p, r in enumerate(assign_refs)])
    )
    return {
        "edges": int(n_edges),
        "nodes_in_clusters": int(n_nodes),
        "seconds": time.perf_counter() - t0,
    }


# --------------------------------------------------------------------------------------
# Phase 3: write one shard


def _cluster_rows(fs, root: str, parts: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Shard ``index``'s cluster rows (node, root, size) and exact duplicates, read from each
    dedup partition's slice for the shard."""
    folder = f"{root}/{WORK}/dedup"
    no_rows, no_dups = np.empty((0, 3), np.int64), np.empty(0, np.int64)
    rows = [_shard_rows(fs, f"{folder}/clusters-{p:04d}.npy", index, no_rows) for p in range(parts)]
    exact = [_shard_rows(fs, f"{folder}/exact-{p:04d}.npy", index, no_dups) for p in range(parts)]
    r, x = np.concatenate(rows), np.concatenate(exact)
    return r[np.argsort(r[:, 0], kind="stable")], np.sort(x)


def write_shard(shard: Mapping[str, Any], cfg: Mapping[str, Any], root_url: str) -> dict[str, Any]:
    """Phase 3 for one shard: dedup decisions, kept rows to ``data/``, duplicates to
    ``rejected/`` (runs inside a Ray task; usable without Ray)."""
    cpu0 = time.process_time()
    fs, root = _fs(root_url)
    label, index = shard["label"], shard["index"]
    wcfg = cfg["writer"]
    dd = cfg["stages"]["dedup"]
    dedup_on = dd["enabled"] and (dd["exact"] or dd["near"])
    parts = int(cfg["executor"]["dedup_partitions"])
    stats = StepStats("dedup")
    if dedup_on:
        crow, exact = _cluster_rows(fs, root, parts, index)
    else:
        crow, exact = np.empty((0, 3), np.int64), np.empty(0, np.int64)
    by_lang: dict[str, list[int]] = {}
    writers: dict[str, ShardWriter] = {}
    rej_writer = None

    def writer_for(lang: str | None) -> ShardWriter:
        key = lang if wcfg["partition_by_lang"] else ""
        if key not in writers:
            folder = "data" if not key else f"data/{safe_component(key or 'und')}"
            writers[key] = ShardWriter(
                fs,
                root,
                folder,
                f"part-{label}",
                row_group_bytes=wcfg["row_group_bytes"],
                file_bytes=wcfg["file_bytes"],
                compression=wcfg["compression"],
                compression_level=wcfg["compression_level"],
            )
        return writers[key]

    row = 0
    base = np.int64(index) << np.int64(32)
    for t in iter_parquet(fs, f"{root}/{WORK}/staging/{label}.parquet"):
        nodes = base + np.arange(row, row + t.num_rows, dtype=np.int64)
        row += t.num_rows
        cid = nodes.copy()
        csize = np.ones(len(nodes), np.int32)
        if len(crow):
            pos = np.searchsorted(crow[:, 0], nodes)
            pos_c = np.minimum(pos, len(crow) - 1)
            hit = crow[pos_c, 0] == nodes
            cid[hit] = crow[pos_c[hit], 1]
            csize[hit] = crow[pos_c[hit], 2]
        t = t.append_column("dup_cluster_id", pa.array(cid, pa.int64()))
        t = t.append_column("dup_cluster_size", pa.array(csize, pa.int32()))
        stats.docs_in += t.num_rows
        stats.bytes_in += int(pc.sum(t["n_bytes"]).as_py() or 0)
        drop = cid != nodes
        if drop.any():
            is_exact = np.isin(nodes, exact)
            reason = np.where(is_exact, "exact_duplicate", "near_duplicate")
            rej = t.filter(pa.array(drop))
            rej = rej.append_column("stage", pa.array(["dedup"] * rej.num_rows, pa.string()))
            rej = rej.append_column("reason", pa.array(reason[drop].tolist(), pa.string()))
            for r in (
                pa.table(
                    {
                        "lang": pc.fill_null(rej["lang"], "und"),
                        "reason": rej["reason"],
                        "b": rej["n_bytes"],
                    }
                )
                .group_by(["lang", "reason"])
                .aggregate([("b", "count"), ("b", "sum")])
                .to_pylist()
            ):
                stats.add_removed(r["lang"], r["reason"], r["b_count"], r["b_sum"] or 0)
            if wcfg["write_rejected"]:
                if rej_writer is None:
                    rej_writer = ShardWriter(
                        fs,
                        root,
                        "rejected",
                        f"part-{label}-dedup",
                        schema=REJECTED_SCHEMA,
                        row_group_bytes=wcfg["row_group_bytes"],
                        file_bytes=1 << 62,
                    )
                rej_writer.write(rej)
            t = t.filter(pa.array(~drop))
        stats.docs_out += t.num_rows
        stats.bytes_out += int(pc.sum(t["n_bytes"]).as_py() or 0) if t.num_rows else 0
        if not t.num_rows:
            continue
        stats.count("clusters_kept_with_duplicates", int(np.count_nonzero(csize[~drop] > 1)))
        langs = pc.fill_null(t["lang"], "und")
        for r in (
            pa.table({"lang": langs, "b": t["n_bytes"]})
            .group_by("lang")
            .aggregate([("b", "count"), ("b", "sum")])
            .to_pylist()
        ):
            e = by_lang.setdefault(r["lang"], [0, 0])
            e[0] += r["b_count"]
            e[1] += r["b_sum"] or 0
        if wcfg["partition_by_lang"]:
            for lang in sorted(set(langs.to_pylist())):
                writer_for(lang).write(t.filter(pc.equal(langs, lang)))
        else:
            writer_for(None).write(t)
    files = []
    for key in sorted(writers):
        files.extend(writers[key].close())
    rejected_files = rej_writer.close() if rej_writer is not None else []
    out = {
        "label": label,
        "files": files,
        "rejected_files": rejected_files,
        "kept_by_lang": by_lang,
        "dedup": stats.to_dict(),
        "cpu_seconds": round(time.process_time() - cpu0, 3),
    }
    _write_json(fs, f"{root}/{WORK}/write/{label}.json", out)
    return out


# --------------------------------------------------------------------------------------
# Driver


def _run_tasks(
    fn, items, cfg, root_url, on_done, stop_after: int | None = None, say=None, phase: str = ""
):
    """Run ``fn(item, cfg, root_url)`` as Ray tasks; ``on_done(result)`` as each finishes, and
    ``say`` a progress line (``"clean: shard 3/12 done (label, 4.1 s)"``)."""
    import ray

    remote = ray.remote(fn).options(num_cpus=1, max_retries=1)
    pending = [remote.remote(it, cfg, root_url) for it in items]
    done_count = 0
    t0 = time.perf_counter()
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        for r in ready:
            result = ray.get(r)
            on_done(result)
            done_count += 1
            if say is not None:
                say(
                    f"{phase}: shard {done_count}/{len(items)} done ({result['label']}; "
                    f"{time.perf_counter() - t0:.1f} s into the phase)"
                )
            if stop_after is not None and done_count >= stop_after:
                for p in pending:
                    ray.cancel(p, force=True)
                raise PipelineInterrupted(
                    f"stopped after {done_count} shard(s) (stop_after_shards)"
                )


def run_pipeline(
    cfg: Mapping[str, Any],
    *,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
    stop_after_shards: int | None = None,
) -> dict[str, Any]:
    """Run the whole pipeline; returns the report (also written to ``DIR/report.json``).

    Ray is initialised with :func:`forensics.raytools.ensure_ray` (``executor.address``, else
    ``RAY_ADDRESS``, else a local cluster) unless it already is.
    """
    from forensics.raytools import ensure_ray

    say = progress or (lambda msg: logger.info("%s", msg))
    t_start = time.perf_counter()
    if not cfg.get("output"):
        raise ConfigError("no output: set 'output' (a folder or fsspec URL)")
    root_url = str(cfg["output"]).rstrip("/")
    fs, root = _fs(root_url)
    shards, skipped = plan_shards(cfg)
    fp = fingerprint({**cfg, "_shards": [s["url"] for s in shards], "_format": OUTPUT_FORMAT})
    if overwrite and fs.exists(root):
        fs.rm(root, recursive=True)
    fs.makedirs(f"{root}/{WORK}", exist_ok=True)
    if fs.exists(f"{root}/{SUCCESS}"):
        done = _read_json(fs, f"{root}/{SUCCESS}")
        if done.get("fingerprint") == fp:
            say(f"{root_url} is already complete (same inputs and config): nothing to do")
            return _read_json(fs, f"{root}/report.json")
        raise ConfigError(
            f"{root_url} holds a finished run with other inputs/config (or an older output "
            "format); "
            "choose another output folder or overwrite"
        )
    fpath = f"{root}/{WORK}/fingerprint.json"
    if fs.exists(fpath):
        if _read_json(fs, fpath).get("fingerprint") != fp:
            raise ConfigError(
                f"{root_url} holds an unfinished run with other inputs/config (or an older "
                "output format); "
                "choose another output folder or overwrite"
            )
    else:
        _write_json(fs, fpath, {"fingerprint": fp})
    ex = cfg["executor"]
    ensure_ray(ex.get("address"), num_cpus=ex.get("num_cpus"))

    # phase 1
    clean, todo = _finished_and_todo(fs, f"{root}/{WORK}/clean", shards)
    say(f"clean: {len(shards)} shard(s), {len(shards) - len(todo)} already done")
    t1 = time.perf_counter()
    _run_tasks(
        clean_shard,
        todo,
        cfg,
        root_url,
        lambda r: clean.__setitem__(r["label"], r),
        stop_after_shards,
        say,
        "clean",
    )
    t_clean = time.perf_counter() - t1

    # phase 2
    dd = cfg["stages"]["dedup"]
    dedup_info: dict[str, Any] = {}
    mark = f"{root}/{WORK}/dedup.json"
    if dd["enabled"] and (dd["exact"] or dd["near"]):
        if fs.exists(mark):
            dedup_info = _read_json(fs, mark)
        else:
            say("dedup: connected components on Ray")
            dedup_info = run_dedup(root_url, int(ex["dedup_partitions"]), len(shards))
            _write_json(fs, mark, dedup_info)

    # phase 3
    written, todo = _finished_and_todo(fs, f"{root}/{WORK}/write", shards)
    say(f"write: {len(todo)} shard(s)")
    t3 = time.perf_counter()
    _run_tasks(
        write_shard,
        todo,
        cfg,
        root_url,
        lambda r: written.__setitem__(r["label"], r),
        say=say,
        phase="write",
    )
    t_write = time.perf_counter() - t3

    # report and manifest (shard order, so deterministic)
    errors = ReadErrors()
    merged: dict[str, StepStats] = {}
    order: list[str] = []
    kept_by_lang: dict[str, list[int]] = {}
    n_in = b_in = 0
    files, rejected_files = [], []
    for s in shards:
        c = clean[s["label"]]
        n_in += c["input_documents"]
        b_in += c["input_bytes"]
        _errors_from_json(c["read_errors"], errors)
        for st in c["steps"]:
            if st["name"] not in merged:
                merged[st["name"]] = StepStats(st["name"])
                order.append(st["name"])
            merged[st["name"]].merge(st)
        w = written[s["label"]]
        if "dedup" not in merged:
            merged["dedup"] = StepStats("dedup")
        merged["dedup"].merge(w["dedup"])
        for lang, (d, b) in w["kept_by_lang"].items():
            e = kept_by_lang.setdefault(lang, [0, 0])
            e[0] += d
            e[1] += b
        files.extend(w["files"])
        rejected_files.extend(w["rejected_files"])
        rp = f"rejected/part-{s['label']}-clean.parquet"
        if c.get("rejected_rows_written"):
            rejected_files.append({"path": rp, "rows": c["rejected_rows_written"]})
    stage_list = [merged[n] for n in order] + ([merged["dedup"]] if dd["enabled"] else [])
    report = build_report(
        stage_stats=stage_list,
        read_errors=errors,
        input_documents=n_in,
        input_bytes=b_in,
        kept_by_lang=kept_by_lang,
        skipped_inputs=skipped,
        extra={
            "output": root_url,
            "shards": len(shards),
            "dedup": dedup_info,
            "config_fingerprint": fp,
            "seconds": {
                "clean": round(t_clean, 3),
                "dedup": round(float(dedup_info.get("seconds", 0.0)), 3),
                "write": round(t_write, 3),
                "total": round(time.perf_counter() - t_start, 3),
                # CPU time inside the tasks (all shards, this run and resumed ones): with the
                # wall times above, the executor's overhead and idle cores
                "clean_tasks_cpu": round(sum(c.get("cpu_seconds", 0.0) for c in clean.values()), 3),
                "write_tasks_cpu": round(
                    sum(w.get("cpu_seconds", 0.0) for w in written.values()), 3
                ),
            },
        },
    )
    files.sort(key=lambda f: f["path"])
    manifest = {
        "schema": ", ".join(OUTPUT_SCHEMA.names),
        "files": files,
        "rows": sum(f["rows"] for f in files),
        "bytes": sum(f["bytes"] for f in files),
        "text_bytes": sum(f["text_bytes"] for f in files),
        "rejected_files": sorted(rejected_files, key=lambda f: f["path"]),
    }
    _write_json(fs, f"{root}/{MANIFEST}", manifest)
    with fs.open(f"{root}/report.json", "w") as fh:
        fh.write(dumps(report))
    with fs.open(f"{root}/funnel.png", "wb") as fh:
        write_funnel_png(report, fh)
    _write_json(fs, f"{root}/{SUCCESS}", {"fingerprint": fp})
    if not ex.get("keep_work"):
        fs.rm(f"{root}/{WORK}", recursive=True)
    say(
        f"done: kept {report['kept_documents']:,} of {report['input_documents']:,} documents "
        f"-> {root_url}"
    )
    return report
