"""The run report (``report.json``) and its funnel chart (``funnel.png``).

Every input document is accounted for: ``input_documents == kept_documents +
removed_documents``, where removals are counted per stage and reason (and per language) by
the steps themselves (:class:`pipeline.steps.StepStats`). Records the reader could not turn
into documents (malformed JSON, missing text field...) are not documents: they are listed
under ``read_errors`` with their file and reason, as are truncated/corrupt/unreadable files and
inputs that were skipped (unsupported file types).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.readers import ReadErrors
from pipeline.steps import StepStats

__all__ = ["build_report", "write_funnel_png"]

#: read-error reasons whose count is a number of records (documents) lost; the others count
#: files (``binary``, ``corrupt``, ``truncated``...) or repaired bytes (``invalid_utf8``)
_RECORD_REASONS = ("bad_json", "missing_text", "non_string_text", "bad_row_group")


def _by_reason(read_errors: ReadErrors) -> dict[str, dict[str, int]]:
    """Per reason: the number of files it occurred in and its summed count."""
    out: dict[str, dict[str, int]] = {}
    for per in read_errors.by_file().values():
        for reason, n in per.items():
            entry = out.setdefault(reason, {"files": 0, "count": 0})
            entry["files"] += 1
            entry["count"] += n
    return dict(sorted(out.items()))


def build_report(
    *,
    stage_stats: Sequence[StepStats],
    read_errors: ReadErrors,
    input_documents: int,
    input_bytes: int,
    kept_by_lang: Mapping[str, list[int]],
    skipped_inputs: Sequence[Mapping[str, str]],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    kept_docs = sum(v[0] for v in kept_by_lang.values())
    kept_bytes = sum(v[1] for v in kept_by_lang.values())
    removed_docs = sum(d for st in stage_stats for d, _ in st.removed.values())
    removed_bytes = sum(b for st in stage_stats for _, b in st.removed.values())
    by_lang: dict[str, Any] = {}
    for lang, (d, b) in kept_by_lang.items():
        by_lang.setdefault(lang, {"kept_documents": 0, "kept_bytes": 0, "removed": {}})
        by_lang[lang]["kept_documents"] += d
        by_lang[lang]["kept_bytes"] += b
    for st in stage_stats:
        for lang, per in st.removed_by_lang.items():
            entry = by_lang.setdefault(lang, {"kept_documents": 0, "kept_bytes": 0, "removed": {}})
            entry["removed"][st.name] = {r: list(v) for r, v in sorted(per.items())}
    pii = {k[4:]: v for st in stage_stats for k, v in st.counters.items() if k.startswith("pii_")}
    funnel = [{"stage": "input", "documents": input_documents, "bytes": input_bytes}]
    for st in stage_stats:
        if st.removed or st.docs_in:
            funnel.append({"stage": st.name, "documents": st.docs_out, "bytes": st.bytes_out})
    unreadable_records = sum(
        n for per in read_errors.by_file().values() for r, n in per.items() if r in _RECORD_REASONS
    )
    report: dict[str, Any] = {
        "input_documents": input_documents,
        "input_bytes": input_bytes,
        "kept_documents": kept_docs,
        "kept_bytes": kept_bytes,
        "removed_documents": removed_docs,
        "removed_bytes": removed_bytes,
        "accounted": input_documents == kept_docs + removed_docs,
        "unreadable_records": unreadable_records,
        "read_errors": {
            "by_reason": _by_reason(read_errors),
            "files": read_errors.by_file(),
            "messages": read_errors.warnings(),
            "skipped_inputs": list(skipped_inputs),
        },
        "stages": [st.to_dict() for st in stage_stats],
        "removed_by_stage": {
            st.name: {r: list(v) for r, v in sorted(st.removed.items())}
            for st in stage_stats
            if st.removed
        },
        "by_language": dict(sorted(by_lang.items())),
        "pii": dict(sorted(pii.items())),
        "funnel": funnel,
    }
    if extra:
        report.update(extra)
    return report


def write_funnel_png(report: Mapping[str, Any], fh) -> None:
    """Bar chart of documents (and MB) left after each stage, written to the binary ``fh``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    funnel = report["funnel"]
    names = [f["stage"] for f in funnel]
    docs = [f["documents"] for f in funnel]
    mb = [f["bytes"] / 1e6 for f in funnel]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(names) + 2), 4.0), dpi=100)
    bars = ax.bar(range(len(names)), docs, color="#4C72B0")
    for b, d, m in zip(bars, docs, mb, strict=True):
        ax.annotate(
            f"{d:,}\n{m:.1f} MB",
            (b.get_x() + b.get_width() / 2, b.get_height()),
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("documents left")
    ax.set_title(
        f"pipeline funnel: {report['kept_documents']:,} of {report['input_documents']:,} kept"
    )
    ax.margins(y=0.2)
    fig.tight_layout()
    fig.savefig(fh, format="png")
    plt.close(fig)


def dumps(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
