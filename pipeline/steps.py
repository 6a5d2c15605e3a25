"""Base classes of the corpus pipeline: steps over Arrow tables, with their own accounting.

A *step* takes a ``pyarrow.Table`` of documents (columns ``id``, ``text``, ``source``,
``n_bytes``, ``lang``... see :data:`BASE_COLUMNS`) and returns ``(kept, rejected)``:

* a :class:`Modifier` rewrites columns (text, new score columns) and rejects nothing;
* a :class:`Filter` decides, per row, *keep* (a null reason) or a *reason* string, in one
  vectorised call (:meth:`Filter.decide`); the base class splits the table, tags the rejected
  rows with ``stage`` and ``reason`` and counts documents and bytes per reason and language.

Steps are plain Python objects usable without Ray (tests call them on small tables); the
executor runs a list of them inside Ray tasks and merges their :class:`StepStats`. This is
datatrove's design (a filter returns keep or a reason, the base class keeps the counts) on
Arrow batches instead of one ``Document`` at a time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "BASE_COLUMNS",
    "Filter",
    "Modifier",
    "Step",
    "StepStats",
    "add_or_replace",
    "recompute_n_bytes",
]

#: columns every batch has when it enters the first step (made by :mod:`pipeline.executor`)
BASE_COLUMNS = ("id", "orig_id", "text", "source", "n_bytes", "lang", "lang_score")


def add_or_replace(table: pa.Table, name: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    """``table`` with column ``name`` set to ``values`` (appended when new)."""
    i = table.schema.get_field_index(name)
    if i < 0:
        return table.append_column(name, values)
    return table.set_column(i, name, values)


def recompute_n_bytes(table: pa.Table) -> pa.Table:
    """Set ``n_bytes`` to the UTF-8 length of ``text`` (after a step changed the text)."""
    return add_or_replace(table, "n_bytes", pc.cast(pc.binary_length(table["text"]), pa.int64()))


@dataclass
class StepStats:
    """Counts of one step, mergeable across batches and tasks (plain dicts: JSON-ready).

    ``removed[reason] = [documents, bytes]``; ``removed_by_lang[lang][reason]`` the same per
    language; ``counters`` holds step-specific counts (PII per type, lines removed, ...).
    """

    name: str
    docs_in: int = 0
    bytes_in: int = 0
    docs_out: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    removed: dict[str, list[int]] = field(default_factory=dict)
    removed_by_lang: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)

    def count(self, key: str, n: int = 1) -> None:
        if n:
            self.counters[key] = self.counters.get(key, 0) + int(n)

    def add_removed(self, lang: str, reason: str, docs: int, nbytes: int) -> None:
        r = self.removed.setdefault(reason, [0, 0])
        r[0] += docs
        r[1] += nbytes
        r = self.removed_by_lang.setdefault(lang, {}).setdefault(reason, [0, 0])
        r[0] += docs
        r[1] += nbytes

    def merge(self, other: StepStats | Mapping[str, Any]) -> None:
        o = other if isinstance(other, StepStats) else StepStats.from_dict(other)
        self.docs_in += o.docs_in
        self.bytes_in += o.bytes_in
        self.docs_out += o.docs_out
        self.bytes_out += o.bytes_out
        self.seconds += o.seconds
        for reason, (d, b) in o.removed.items():
            r = self.removed.setdefault(reason, [0, 0])
            r[0] += d
            r[1] += b
        for lang, per in o.removed_by_lang.items():
            for reason, (d, b) in per.items():
                r = self.removed_by_lang.setdefault(lang, {}).setdefault(reason, [0, 0])
                r[0] += d
                r[1] += b
        for k, v in o.counters.items():
            self.count(k, v)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "docs_in": self.docs_in,
            "bytes_in": self.bytes_in,
            "docs_out": self.docs_out,
            "bytes_out": self.bytes_out,
            "seconds": round(self.seconds, 4),
            "removed": {k: list(v) for k, v in sorted(self.removed.items())},
            "removed_by_lang": {
                lang: {k: list(v) for k, v in sorted(per.items())}
                for lang, per in sorted(self.removed_by_lang.items())
            },
            "counters": dict(sorted(self.counters.items())),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StepStats:
        return cls(
            name=d["name"],
            docs_in=d["docs_in"],
            bytes_in=d["bytes_in"],
            docs_out=d["docs_out"],
            bytes_out=d["bytes_out"],
            seconds=d.get("seconds", 0.0),
            removed={k: list(v) for k, v in d["removed"].items()},
            removed_by_lang={
                lang: {k: list(v) for k, v in per.items()}
                for lang, per in d["removed_by_lang"].items()
            },
            counters=dict(d["counters"]),
        )


def _lang_column(table: pa.Table) -> pa.ChunkedArray:
    if "lang" in table.column_names:
        return pc.fill_null(table["lang"], "unknown")
    return pa.chunked_array([pa.array(["unknown"] * table.num_rows, pa.string())])


class Step(ABC):
    """One pipeline step. Subclasses set ``name`` and implement :meth:`_run`.

    Calling the step (``kept, rejected = step(table)``) times it and updates ``self.stats``.
    ``rejected`` is ``None`` or a table with the input's columns plus ``stage`` and ``reason``.
    """

    name = "step"

    def __init__(self) -> None:
        self.stats = StepStats(self.name)

    @abstractmethod
    def _run(self, table: pa.Table) -> tuple[pa.Table, pa.Table | None]:
        """Process one table: ``(kept, rejected or None)``."""

    def __call__(self, table: pa.Table) -> tuple[pa.Table, pa.Table | None]:
        import time

        t0 = time.perf_counter()
        st = self.stats
        st.docs_in += table.num_rows
        st.bytes_in += _sum(table["n_bytes"]) if table.num_rows else 0
        kept, rejected = self._run(table)
        if rejected is not None and rejected.num_rows:
            grouped = (
                pa.table(
                    {
                        "lang": _lang_column(rejected),
                        "reason": rejected["reason"],
                        "n_bytes": rejected["n_bytes"],
                    }
                )
                .group_by(["lang", "reason"])
                .aggregate([("n_bytes", "count"), ("n_bytes", "sum")])
            )
            for row in grouped.to_pylist():
                st.add_removed(
                    row["lang"], row["reason"], row["n_bytes_count"], row["n_bytes_sum"] or 0
                )
        elif rejected is not None and not rejected.num_rows:
            rejected = None
        st.docs_out += kept.num_rows
        st.bytes_out += _sum(kept["n_bytes"]) if kept.num_rows else 0
        st.seconds += time.perf_counter() - t0
        return kept, rejected


def _sum(col: pa.ChunkedArray) -> int:
    v = pc.sum(col).as_py()
    return int(v or 0)


class Modifier(Step):
    """A step that rewrites the table and rejects nothing: implement :meth:`modify`."""

    @abstractmethod
    def modify(self, table: pa.Table) -> pa.Table:
        """The rewritten table."""

    def _run(self, table: pa.Table) -> tuple[pa.Table, pa.Table | None]:
        if not table.num_rows:
            return table, None
        return self.modify(table), None


class Filter(Step):
    """A step that keeps or rejects rows: implement :meth:`decide`.

    ``decide(table)`` returns ``(reasons, scores)``: ``reasons`` a string array aligned with
    the rows (null = keep, otherwise the rejection reason), ``scores`` a mapping of extra
    columns (filter scores) added to the table before it is split, so that kept and rejected
    rows both carry them.
    """

    @abstractmethod
    def decide(
        self, table: pa.Table
    ) -> tuple[pa.Array | pa.ChunkedArray, Mapping[str, pa.Array | pa.ChunkedArray]]:
        """Per-row reasons (null = keep) and score columns."""

    def _run(self, table: pa.Table) -> tuple[pa.Table, pa.Table | None]:
        if not table.num_rows:
            return table, None
        reasons, scores = self.decide(table)
        for name, values in scores.items():
            table = add_or_replace(table, name, values)
        keep = pc.is_null(reasons)
        if pc.all(keep).as_py():
            return table, None
        kept = table.filter(keep)
        rejected_mask = pc.invert(keep)
        rejected = table.filter(rejected_mask)
        rejected = add_or_replace(
            rejected, "stage", pa.array([self.name] * rejected.num_rows, pa.string())
        )
        rejected = add_or_replace(
            rejected, "reason", pc.cast(pc.filter(reasons, rejected_mask), pa.string())
        )
        return kept, rejected
