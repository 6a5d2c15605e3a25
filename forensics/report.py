"""Presenting an :class:`~forensics.infer.InferenceResult`: rich table, diagnostics, JSON, PNG.

* :func:`mixture_table` — categories sorted by byte proportion (bytes %, pairs %, sample MB);
* :func:`diagnostics_panel` — LP objective, rounds, constraints added, pair slacks, optimality
  and time per phase;
* :func:`print_report` — both, plus the warnings;
* :func:`write_json` — the result's JSON to a path or any fsspec URL;
* :func:`plot_mixture` — a horizontal bar chart (matplotlib, Agg backend) to a PNG.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import fsspec
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from .infer import InferenceResult

__all__ = [
    "diagnostics_panel",
    "mixture_table",
    "plot_mixture",
    "print_report",
    "write_json",
]

_PHASES = ("load", "ray_init", "count", "trajectories", "lp", "bootstrap", "total")


def mixture_table(result: InferenceResult, *, title: str | None = None) -> Table:
    """Categories sorted by byte proportion (largest first)."""
    tok = result.tokenizer
    table = Table(
        title=title or f"Inferred mixture of {tok.get('name') or tok.get('source')}",
        title_justify="left",
    )
    table.add_column("category")
    table.add_column("bytes %", justify="right")
    iv = result.intervals
    if iv:
        table.add_column(f"{100 * (result.confidence or 0):.0f}% interval", justify="right")
    table.add_column("pairs %", justify="right")
    table.add_column("sample MB", justify="right")
    for name, share in result.ranked():
        st = result.stats.get(name)
        cells = [name, f"{100 * share:.2f}"]
        if iv:
            cells.append(f"{100 * iv[name]['lower']:.2f} – {100 * iv[name]['upper']:.2f}")
        cells += [
            f"{100 * result.mixture_pairs.get(name, 0.0):.2f}",
            f"{st.bytes / 1e6:.2f}" if st else "-",
        ]
        table.add_row(*cells)
    return table


def _fmt_seconds(s: float) -> str:
    return f"{s:.2f} s" if s < 120 else f"{s / 60:.1f} min"


def diagnostics_panel(result: InferenceResult) -> Panel:
    """LP and timing diagnostics."""
    d = result.diagnostics
    tok = result.tokenizer
    lines = Table.grid(padding=(0, 2))
    lines.add_column(style="bold")
    lines.add_column()
    lines.add_row(
        "tokenizer",
        f"{tok.get('source')} ({tok.get('format')}, {tok.get('n_merges')} merges, "
        f"{tok.get('pretokenizer')}{'/' + tok['pattern'] if tok.get('pattern') else ''}, "
        f"{'line' if tok.get('line_mode') else 'document'} mode)",
    )
    used = f"{d.T} ({d.steps_used} present in some sample)"
    if d.after:
        used = f"{d.after + 1}..{d.T} (first {d.after} pre-applied; {d.steps_used} present)"
    lines.add_row("merges used (T)", used)
    lines.add_row(
        "unexplained merges",
        f"{100 * d.violated_share:.1f}% (not the most frequent pair at the estimate)",
    )
    lines.add_row("objective", f"{d.objective:.6g}")
    lines.add_row("rounds", str(d.rounds))
    lines.add_row("constraints added", str(d.rows))
    lines.add_row("pair slacks", str(d.pair_slacks))
    opt = Text("yes", style="green") if d.optimal else Text("no", style="bold red")
    if not d.optimal:
        opt.append(f" (max violation {d.max_violation:.3g})")
    lines.add_row("optimal", opt)
    lines.add_row("solver", d.solver)
    times = ", ".join(
        f"{k} {_fmt_seconds(result.timings[k])}" for k in _PHASES if k in result.timings
    )
    lines.add_row("time", times)
    return Panel(lines, title="diagnostics", title_align="left", expand=False)


def print_report(
    result: InferenceResult,
    console: Console | None = None,
    *,
    diagnostics: bool = True,
    warnings: bool = True,
) -> None:
    """Print the table, the diagnostics panel and (unless ``warnings=False``) the warnings."""
    console = console or Console()
    parts: list = [mixture_table(result)]
    if diagnostics:
        parts.append(diagnostics_panel(result))
    console.print(Group(*parts))
    if warnings:
        for w in result.warnings:
            console.print(Text(f"warning: {w}", style="yellow"))


def write_json(result: InferenceResult, url: str) -> None:
    """Write ``result.to_json()`` to a local path or an fsspec URL (``-`` is not handled)."""
    data = result.to_json().encode("utf-8") + b"\n"
    with fsspec.open(url, "wb", auto_mkdir=True) as fh:
        fh.write(data)


def plot_mixture(result: InferenceResult, url: str, *, top: int | None = None) -> None:
    """A horizontal bar chart of the byte proportions (largest at the top) as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ranked = result.ranked()
    if top is not None:
        ranked = ranked[:top]
    names = [n for n, _ in ranked][::-1]
    values = [100 * v for _, v in ranked][::-1]
    fig = Figure(figsize=(7, max(2.0, 0.35 * len(names) + 1.0)), dpi=120)
    FigureCanvasAgg(fig)  # Agg canvas: no GUI backend, no global pyplot state
    ax = fig.add_subplot()
    bars = ax.barh(names, values, color="#4c72b0")
    for bar, v in zip(bars, values, strict=True):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {v:.1f}%", va="center")
    ax.set_xlabel("share of training bytes (%)")
    tok = result.tokenizer
    ax.set_title(f"Inferred mixture: {tok.get('name') or tok.get('source')} (T={tok.get('T')})")
    ax.set_xlim(0, max([*values, 1.0]) * 1.15)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    with fsspec.open(url, "wb", auto_mkdir=True) as fh:
        fh.write(buf.getvalue())
