"""``mixtrace pipeline run``: the corpus pipeline as a typer sub-app.

Mounted by the main CLI with ``app.add_typer(pipeline_app, name="pipeline")``::

    mixtrace pipeline run data/raw/*.jsonl.gz --output out/clean   # defaults for every stage
    mixtrace pipeline run config.yaml                               # inputs/output from the config
    mixtrace pipeline run config.yaml --address ray://head:10001    # on a cluster

Configuration problems, missing inputs and an output folder holding another run print one red
line naming the culprit and exit with code 2.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

__all__ = ["app"]

app = typer.Typer(
    name="pipeline",
    add_completion=False,
    no_args_is_help=True,
    help="Corpus pipeline on Ray: clean, deduplicate and shard text into Parquet.",
    pretty_exceptions_enable=False,
)


@app.callback()
def _group() -> None:
    """Corpus pipeline on Ray: clean, deduplicate and shard text into Parquet."""


def _is_config(arg: str) -> bool:
    return arg.lower().endswith((".yaml", ".yml"))


@app.command()
def run(
    args: Annotated[
        list[str],
        typer.Argument(
            help="A config.yaml, or input files/folders/globs/URLs (or both: config first)."
        ),
    ],
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Output folder or fsspec URL.")
    ] = None,
    address: Annotated[
        str | None,
        typer.Option("--address", help="Ray cluster address (else RAY_ADDRESS, else a local Ray)."),
    ] = None,
    num_cpus: Annotated[
        int | None, typer.Option("--num-cpus", help="CPUs of the local Ray (ignored on a cluster).")
    ] = None,
    text_field: Annotated[
        str, typer.Option("--text-field", help="Text field of JSONL/Parquet inputs given here.")
    ] = "text",
    partition_by_lang: Annotated[
        bool, typer.Option("--partition-by-lang", help="Write data/<lang>/ folders.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Delete an existing output folder first.")
    ] = False,
    keep_work: Annotated[
        bool, typer.Option("--keep-work", help="Keep DIR/_work (staging, markers) after the run.")
    ] = False,
) -> None:
    """Run the pipeline; writes DIR/data/*.parquet, DIR/rejected/, manifest.json, report.json."""
    from pipeline.config import ConfigError, load_config
    from pipeline.executor import run_pipeline

    err = Console(stderr=True)
    out = Console()
    config = args[0] if args and _is_config(args[0]) else None
    inputs = args[1:] if config else args
    try:
        overrides: dict = {}
        if inputs:
            overrides["inputs"] = [{"path": p, "text_field": text_field} for p in inputs]
        if output:
            overrides["output"] = output
        executor = {k: v for k, v in {"address": address, "num_cpus": num_cpus}.items() if v}
        if keep_work:
            executor["keep_work"] = True
        if executor:
            overrides["executor"] = executor
        if partition_by_lang:
            overrides["writer"] = {"partition_by_lang": True}
        cfg = load_config(config, **overrides)  # a local path or an fsspec URL
        if not cfg["inputs"]:
            raise ConfigError("no inputs: give input paths or a config with 'inputs'")
        report = run_pipeline(cfg, overwrite=overwrite, progress=lambda m: out.print(escape(m)))
    except (ConfigError, FileNotFoundError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    out.print(
        f"input {report['input_documents']:,} documents, kept {report['kept_documents']:,} "
        f"({report['kept_bytes'] / 1e6:.2f} MB); report: {escape(str(cfg['output']))}/report.json"
    )
    for line in report["read_errors"]["messages"][:20]:
        err.print(f"[yellow]warning:[/yellow] {escape(line)}")
    for s in report["read_errors"]["skipped_inputs"]:
        err.print(f"[yellow]skipped:[/yellow] {escape(s['path'])}: {escape(s['reason'])}")


if __name__ == "__main__":  # pragma: no cover
    app()
