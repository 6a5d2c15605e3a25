"""Categories of sample text for mixture inference, and how to sample them.

A *category spec* is either

* a YAML file mapping each category name to a path, glob or URL, or a list of them::

      en: corpora/en.jsonl.gz              # relative to the YAML file's folder
      code: [code/*.jsonl.zst, "s3://bucket/code/**/*.parquet"]

  (every value is read as a string: ``no:`` is the category ``"no"``, not ``False``); or
* a folder whose entries are the categories: a supported file ``en.jsonl.gz`` is the
  category ``en`` (all known extensions stripped), a subfolder ``code/`` is the category
  ``code`` with every supported file below it. Hidden entries (``.x``, ``_x``) and files of
  other types (``README.md``) are ignored.

:func:`load_categories` resolves a spec to ``{category: [file URL, ...]}``;
:func:`sample_text` reads a deterministic prefix of a category's text;
:func:`split_documents` splits documents into two disjoint parts (e.g. merges learned from
one, inference attacked with the other); :func:`shard_plan` cuts a category's sample into
per-file shards for parallel tasks (see its docstring for how budgets are assigned).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import fsspec
import yaml
from fsspec.implementations.local import LocalFileSystem

from pipeline.readers import (
    ReadErrors,
    detect_format,
    expand_paths,
    is_supported,
    iter_documents,
    strip_known_extensions,
    utf8_len,
)

__all__ = [
    "CategoryError",
    "Shard",
    "ShardSample",
    "cut_to_bytes",
    "estimate_text_bytes",
    "load_categories",
    "merge_shard_samples",
    "sample_shard",
    "sample_text",
    "shard_plan",
    "split_documents",
]

T = TypeVar("T")


class CategoryError(ValueError):
    """A category spec that cannot be used; ``category`` and ``path`` say which part."""

    def __init__(self, message: str, *, category: str | None = None, path: str | None = None):
        super().__init__(message)
        self.category = category
        self.path = path


# --------------------------------------------------------------------------------------
# Loading


class _StringLoader(yaml.SafeLoader):
    """Safe YAML loader where every scalar is a string and duplicate keys are errors."""

    yaml_implicit_resolvers: dict = {}  # noqa: RUF012 - class attribute consumed by PyYAML

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[object, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    first = seen.get(key)
                except TypeError:
                    continue  # unhashable keys: let PyYAML report them
                if first is not None:
                    raise CategoryError(
                        f"duplicate category {key!r} (lines {first} and {line})",
                        category=str(key),
                    )
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _has_protocol(spec: str) -> bool:
    return "://" in spec or "::" in spec


def _resolve(entry: str, spec: str, base_dir: str) -> str:
    """Resolve a YAML entry relative to the folder of the YAML file ``spec``."""
    if _has_protocol(entry):
        return entry
    entry = os.path.expanduser(entry)
    if entry.startswith("/"):
        return entry
    if _has_protocol(spec):
        protocol = spec.split("://", 1)[0]
        return f"{protocol}://{posixpath.join(base_dir, entry)}"
    return posixpath.normpath(posixpath.join(base_dir, entry))


def _expand(category: str, entries: list[str]) -> list[str]:
    urls: list[str] = []
    for entry in entries:
        try:
            found = expand_paths(entry)
        except FileNotFoundError as exc:
            raise CategoryError(
                f"category {category!r}: {entry!r} not found ({exc})", category=category, path=entry
            ) from exc
        except (OSError, ValueError) as exc:
            raise CategoryError(
                f"category {category!r}: {entry!r} cannot be used ({exc})",
                category=category,
                path=entry,
            ) from exc
        for url in found:
            fs, path = fsspec.core.url_to_fs(url)
            if isinstance(fs, LocalFileSystem) and not os.access(path, os.R_OK):
                raise CategoryError(
                    f"category {category!r}: {url!r} is not readable",
                    category=category,
                    path=url,
                )
            if url not in urls:
                urls.append(url)
    return urls


def _from_yaml(spec: str) -> dict[str, list[str]]:
    fs, path = fsspec.core.url_to_fs(spec)
    try:
        with fs.open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise CategoryError(f"cannot read category file {spec!r}: {exc}", path=spec) from exc
    try:
        data = yaml.load(raw.decode("utf-8"), Loader=_StringLoader)  # SafeLoader subclass
    except UnicodeDecodeError as exc:
        raise CategoryError(f"category file {spec!r} is not UTF-8: {exc}", path=spec) from exc
    except yaml.YAMLError as exc:
        raise CategoryError(f"invalid YAML in {spec!r}: {exc}", path=spec) from exc
    if data is None or data == "" or data == {}:
        raise CategoryError(f"category file {spec!r} defines no categories", path=spec)
    if not isinstance(data, dict):
        raise CategoryError(
            f"category file {spec!r} must map category names to paths, "
            f"not be a {type(data).__name__}",
            path=spec,
        )
    base_dir = posixpath.dirname(path)
    out: dict[str, list[str]] = {}
    for name, value in data.items():
        if not isinstance(name, str) or not name.strip():
            raise CategoryError(f"{spec!r}: invalid category name {name!r}", path=spec)
        entries = [value] if isinstance(value, str) else value
        if (
            not isinstance(entries, list)
            or not entries
            or not all(isinstance(e, str) and e.strip() for e in entries)
        ):
            raise CategoryError(
                f"category {name!r} in {spec!r}: expected a path or a list of paths, got {value!r}",
                category=name,
                path=spec,
            )
        out[name] = _expand(name, [_resolve(e.strip(), spec, base_dir) for e in entries])
    return out


def _from_folder(spec: str) -> dict[str, list[str]]:
    fs, path = fsspec.core.url_to_fs(spec)
    protocol = _has_protocol(spec)
    entries = sorted(fs.ls(path, detail=True), key=lambda info: info["name"])
    out: dict[str, list[str]] = {}
    where: dict[str, str] = {}
    for info in entries:
        entry = info["name"].rstrip("/")
        base = posixpath.basename(entry)
        if base.startswith((".", "_")):
            continue
        url = fs.unstrip_protocol(entry) if protocol else entry
        if info.get("type") == "directory":
            name = base
        elif is_supported(entry):
            name = strip_known_extensions(base)
        else:
            continue
        if name in out:
            raise CategoryError(
                f"duplicate category {name!r} in {spec!r}: {where[name]!r} and {url!r}",
                category=name,
                path=url,
            )
        where[name] = url
        out[name] = _expand(name, [url])
    if not out:
        raise CategoryError(
            f"folder {spec!r} holds no categories (no supported files or subfolders)", path=spec
        )
    return out


def load_categories(spec: str) -> dict[str, list[str]]:
    """Resolve a category spec (YAML file or folder, see the module docstring) to
    ``{category: [file URL, ...]}`` (YAML order, or sorted names for a folder).

    Raises :class:`CategoryError` for a missing spec, an empty one, a duplicate category
    name, or a category whose path is missing, unreadable or unsupported (the message
    names the category and the path).
    """
    fs, path = fsspec.core.url_to_fs(spec)
    if fs.isdir(path):
        return _from_folder(spec)
    if not fs.exists(path):
        raise CategoryError(f"category spec {spec!r} does not exist", path=spec)
    if not path.lower().endswith((".yaml", ".yml")):
        raise CategoryError(
            f"category spec {spec!r} must be a YAML file (.yaml/.yml) or a folder", path=spec
        )
    return _from_yaml(spec)


# --------------------------------------------------------------------------------------
# Sampling


def cut_to_bytes(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` of at most ``max_bytes`` UTF-8 bytes that ends at a
    line boundary (keeping the ``\\n``); when no line fits, the longest prefix that ends
    at a character boundary."""
    if max_bytes <= 0:
        return ""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    window = data[:max_bytes]
    nl = window.rfind(b"\n")
    if nl >= 0:
        return window[: nl + 1].decode("utf-8")
    return window.decode("utf-8", errors="ignore")


def _fill(texts: Iterable[tuple[str, int]], budget: int, out: list[str]) -> tuple[int, bool]:
    """Append texts to ``out`` until ``budget`` bytes.

    Returns ``(bytes added, stopped)``: ``stopped`` is True when the budget ended the
    filling (a text was cut, or the budget was reached exactly) rather than running out
    of texts.
    """
    total = 0
    for text, n in texts:
        if n == 0:
            continue
        room = budget - total
        if n > room:
            cut = cut_to_bytes(text, room)
            if cut:
                out.append(cut)
                total += utf8_len(cut)
            return total, True
        out.append(text)
        total += n
        if total >= budget:
            return total, True
    return total, False


def _doc_texts(url: str, text_field: str, errors: ReadErrors) -> Iterator[tuple[str, int]]:
    docs = iter_documents(url, text_field=text_field, errors=errors)
    try:
        for doc in docs:
            yield doc.text, doc.n_bytes
    finally:
        docs.close()  # stop reading the file as soon as the budget is reached


def _all_texts(urls: Iterable[str], text_field: str, errors: ReadErrors):
    for url in urls:
        yield from _doc_texts(url, text_field, errors)


def sample_text(
    urls: str | Iterable[str],
    *,
    sample_bytes: int,
    seed: int = 0,
    errors: ReadErrors,
    text_field: str = "text",
) -> list[str]:
    """Read documents from ``urls`` in order until ``sample_bytes`` UTF-8 bytes are collected.

    Returns the document texts: whole documents, except the last one, which is cut (see
    :func:`cut_to_bytes`) so that the total never exceeds ``sample_bytes``. Empty documents
    are skipped (the readers count them in ``errors``). Reading stops, and files are closed,
    as soon as the budget is reached; later files are not opened. The sample is the same
    prefix on every call; ``seed`` does not change it (it is accepted so that callers can
    pass one seed to every sampling step; use :func:`split_documents` for random splits).
    """
    del seed  # the sample is a deterministic prefix (documented above)
    if sample_bytes <= 0:
        raise ValueError(f"sample_bytes must be positive, got {sample_bytes}")
    url_list = [urls] if isinstance(urls, str) else list(urls)
    gen = _all_texts(url_list, text_field, errors)
    out: list[str] = []
    try:
        _fill(gen, sample_bytes, out)
    finally:
        gen.close()
    return out


def split_documents(
    texts: Sequence[T], fraction: float = 0.5, seed: int = 0
) -> tuple[list[T], list[T]]:
    """Split ``texts`` into disjoint ``(train, attack)`` lists.

    ``train`` gets ``round(len(texts) * fraction)`` documents (halves rounded up), chosen by
    ordering the indices by a keyed hash of ``(seed, index)`` (BLAKE2b): the split depends
    only on ``len(texts)``, ``fraction`` and ``seed``, is the same on every platform and
    Python/numpy version, and both parts keep the original document order.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    n = len(texts)
    key = str(seed).encode("utf-8")

    def rank(i: int) -> bytes:
        return hashlib.blake2b(i.to_bytes(8, "little"), digest_size=8, key=key[:64]).digest()

    order = sorted(range(n), key=rank)
    n_train = int(n * fraction + 0.5)
    train_idx = sorted(order[:n_train])
    attack_idx = sorted(order[n_train:])
    return [texts[i] for i in train_idx], [texts[i] for i in attack_idx]


# --------------------------------------------------------------------------------------
# Sharding


@dataclass(frozen=True)
class Shard:
    """Read at most ``max_bytes`` of text from the start of ``url`` (for ``category``)."""

    category: str
    url: str
    max_bytes: int


@dataclass(frozen=True)
class ShardSample:
    """What :func:`sample_shard` read: ``hit_cap`` is True when reading stopped at
    ``shard.max_bytes`` (the file may hold more text), False when the file ran out."""

    shard: Shard
    texts: list[str]
    n_bytes: int
    hit_cap: bool


def estimate_text_bytes(url: str) -> int:
    """A deliberately low estimate of the text bytes a file holds, from its size alone.

    * compressed text files (``.gz``/``.zst``/...) and Parquet: the file size (text expands
      when decompressed; real corpora expand 3-5x);
    * ``.jsonl``/``.json``: half the file size (field names, ids and escapes such as
      ``\\uXXXX`` at most double the size of the text in practice);
    * ``.txt``: the file size.

    0 when the size cannot be obtained.
    """
    try:
        fs, path = fsspec.core.url_to_fs(url)
        size = fs.size(path)
    except (OSError, ValueError):
        return 0
    if not size:
        return 0
    fmt, compression = detect_format(url)
    if fmt == "jsonl" and compression is None:
        return int(size) // 2
    return int(size)


def shard_plan(
    urls: str | Iterable[str],
    *,
    sample_bytes: int,
    shard_bytes: int,
    category: str = "",
) -> list[Shard]:
    """Plan the reading of a category's sample as one shard per file, for parallel tasks.

    Files are taken in order. Each gets ``max_bytes = min(shard_bytes, remaining)``, where
    ``remaining`` is ``sample_bytes`` minus what the earlier shards are expected to give
    (the lesser of their ``max_bytes`` and :func:`estimate_text_bytes` of their file);
    planning stops when nothing remains. Each task reads its file sequentially from the
    start and stops at ``max_bytes`` (:func:`sample_shard`); the driver joins the results
    in plan order and cuts them to the budget (:func:`merge_shard_samples`).

    The result is the sequential sample in which no file gives more than ``shard_bytes``;
    with ``shard_bytes >= sample_bytes`` it is exactly ``sample_text(urls, ...)``. That
    holds because the size estimates are low: a shard is never given less than the
    sequential read takes from its file. When an estimate is too high (e.g. a JSON file
    made mostly of other fields) the merged sample can fall short of ``sample_bytes``;
    the driver can compare sizes and plan again with the files left out.
    """
    if sample_bytes <= 0 or shard_bytes <= 0:
        raise ValueError("sample_bytes and shard_bytes must be positive")
    url_list = [urls] if isinstance(urls, str) else list(urls)
    plan: list[Shard] = []
    remaining = sample_bytes
    for url in url_list:
        if remaining <= 0:
            break
        cap = min(shard_bytes, remaining)
        plan.append(Shard(category, url, cap))
        remaining -= min(cap, estimate_text_bytes(url))
    return plan


def sample_shard(shard: Shard, *, errors: ReadErrors, text_field: str = "text") -> ShardSample:
    """Read one shard: the first ``shard.max_bytes`` of text of ``shard.url`` (documents
    cut as in :func:`sample_text`)."""
    gen = _doc_texts(shard.url, text_field, errors)
    texts: list[str] = []
    try:
        n_bytes, stopped = _fill(gen, shard.max_bytes, texts)
    finally:
        gen.close()
    return ShardSample(shard, texts, n_bytes, stopped)


def merge_shard_samples(
    samples: Iterable[ShardSample], *, sample_bytes: int, shard_bytes: int
) -> list[str]:
    """Join shard samples in plan order into the category sample of ``sample_bytes``.

    Texts are appended and the last one cut as in :func:`sample_text`. After a shard that
    stopped at its cap while the budget left was at most ``shard_bytes``, the sequential
    read would have gone on in that same file, so the merge stops there.
    """
    if sample_bytes <= 0:
        raise ValueError(f"sample_bytes must be positive, got {sample_bytes}")
    out: list[str] = []
    total = 0
    for sample in samples:
        room = sample_bytes - total
        if room <= 0:
            break
        added, stopped = _fill(((t, utf8_len(t)) for t in sample.texts), room, out)
        total += added
        if stopped or (sample.hit_cap and room <= shard_bytes):
            break
    return out
