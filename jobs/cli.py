"""The ``mixtrace`` command line.

* ``mixtrace infer TOKENIZER --categories CATS``: infer the training-data mixture of a BPE
  tokenizer over sample text categories;
* ``mixtrace demo``: the controlled experiment on the bundled ``data/sample`` (train a BPE on a
  known mixture, infer it back, compare);
* ``mixtrace --version``.

Problems with the input (missing files, empty categories, non-BPE tokenizers, uncached hub ids
offline, solver failures) print one red line naming the culprit and exit with code 2.
"""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

__all__ = ["app", "main"]

app = typer.Typer(
    name="mixtrace",
    add_completion=False,
    no_args_is_help=True,
    help="Tokenizer forensics: infer the data mixture a BPE tokenizer was trained on.",
    pretty_exceptions_enable=False,
)


class Solver(str, Enum):
    highs = "highs"
    pulp_highs = "pulp-highs"
    pulp_cbc = "pulp-cbc"


class LPMethod(str, Enum):
    auto = "auto"
    tree = "tree"
    rows = "rows"
    kelley = "kelley"


# options shared by several commands
SolverOpt = Annotated[Solver, typer.Option("--solver", help="LP solver.")]
LPMethodOpt = Annotated[
    LPMethod,
    typer.Option(
        "--lp-method",
        help="LP formulation: auto (tree with HiGHS, rows with pulp), tree, rows, kelley.",
    ),
]
AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address", help="Ray cluster address (default: RAY_ADDRESS or a local cluster)."
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
CategoriesOpt = Annotated[
    str,
    typer.Option("--categories", "-c", help="YAML category spec or a folder of category files."),
]
AfterOpt = Annotated[
    int,
    typer.Option(
        "--after",
        min=0,
        help="Attack merges K+1.. only, the first K pre-applied (an extended vocabulary).",
    ),
]
BootstrapOpt = Annotated[
    int,
    typer.Option(
        "--bootstrap", min=0, help="Bootstrap replicates for confidence intervals (0: none)."
    ),
]
VocabOpt = Annotated[int, typer.Option("--vocab-size", min=300, help="BPE vocabulary size.")]


def _mount_subcommands() -> None:
    from jobs.bpe_cli import app as bpe_app
    from jobs.pipeline_cli import app as pipeline_app

    app.add_typer(pipeline_app, name="pipeline")
    app.add_typer(bpe_app, name="bpe")


_mount_subcommands()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mixtrace")
    except PackageNotFoundError:
        import tomllib

        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        try:
            return tomllib.loads(pyproject.read_text("utf-8"))["project"]["version"]
        except (OSError, KeyError, ValueError):
            return "unknown"


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"mixtrace {_version()}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Tokenizer forensics: infer the data mixture a BPE tokenizer was trained on."""


def _err_console() -> Console:
    return Console(stderr=True, soft_wrap=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    message = " ".join(line.strip() for line in message.splitlines() if line.strip())
    _err_console().print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False)
    return typer.Exit(code)


def _merges_option(value: str) -> int | str | None:
    """``--merges``: a positive number, ``all`` or ``auto``."""
    if value in ("all", "auto"):
        return None if value == "all" else "auto"
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n <= 0:
        raise _fail(f"--merges must be a positive number, 'all' or 'auto', not {value!r}")
    return n


def _weights_option(value: str) -> tuple[tuple[str, float], ...]:
    """``--weights en=0.5,ko=0.5``."""
    out = []
    for part in value.split(","):
        name, sep, w = part.partition("=")
        try:
            out.append((name.strip(), float(w)))
        except ValueError:
            raise _fail(f"--weights: {part!r} is not name=weight") from None
        if not sep or not name.strip():
            raise _fail(f"--weights: {part!r} is not name=weight")
    return tuple(out)


class _Progress:
    """Rich progress for the counting tasks and the LP rounds (on stderr)."""

    def __init__(self, enabled: bool):
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=_err_console(),
            disable=not enabled,
        )
        self._prep: TaskID | None = None
        self._count: TaskID | None = None
        self._lp: TaskID | None = None
        self._boot: TaskID | None = None

    def __enter__(self) -> _Progress:
        self.progress.__enter__()
        self._prep = self.progress.add_task("loading tokenizer, starting Ray", total=None)
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def _end_prep(self) -> None:
        if self._prep is not None:
            self.progress.update(self._prep, total=1, completed=1)
            self._prep = None

    def count(self, info: dict) -> None:
        self._end_prep()
        if self._count is None:
            self._count = self.progress.add_task("counting shards", total=info["total"])
        self.progress.update(
            self._count,
            total=info["total"],
            completed=info["done"],
            description=f"counting shards ({info['category']} done)",
        )

    def bootstrap(self, info: dict) -> None:
        if self._boot is None:
            self._boot = self.progress.add_task("bootstrap", total=info["replicates"])
        self.progress.update(self._boot, completed=info["replicate"])

    def lp(self, info: dict) -> None:
        self._end_prep()
        if self._count is not None:
            self.progress.update(self._count, description="counting shards")
        if self._lp is None:
            self._lp = self.progress.add_task("solving LP", total=None)
        self.progress.update(
            self._lp,
            completed=info.get("round", 0),
            description=(
                f"solving LP: round {info.get('round')}, {info.get('rows')} rows, "
                f"objective {info.get('objective', float('nan')):.6g}"
            ),
        )


def _write_outputs(result, json_out: str | None, plot: str | None) -> None:
    from forensics.report import plot_mixture, write_json

    if json_out:
        try:
            write_json(result, json_out)
        except OSError as e:
            raise _fail(f"{json_out}: cannot write the JSON output: {e}") from None
    if plot:
        try:
            plot_mixture(result, plot)
        except OSError as e:
            raise _fail(f"{plot}: cannot write the plot: {e}") from None


@app.command()
def infer(
    tokenizer: Annotated[
        str,
        typer.Argument(
            help="tokenizer.json, vocab.json+merges.txt folder, .tiktoken, .model or hub id."
        ),
    ],
    categories: CategoriesOpt,
    sample_bytes: Annotated[
        float, typer.Option("--sample-bytes", help="Text bytes read per category.")
    ] = 1e9,
    merges: Annotated[
        str,
        typer.Option(
            "--merges", help="T: the first T merges, 'all' (default) or 'auto' (from the data)."
        ),
    ] = "all",
    document_mode: Annotated[
        bool, typer.Option("--document-mode", help="Count whole documents instead of lines.")
    ] = False,
    pattern: Annotated[
        str | None,
        typer.Option(
            "--pattern", help="Pretokenizer regex override: a name (cl100k, o200k, ...) or regex."
        ),
    ] = None,
    solver: SolverOpt = Solver.highs,
    json_out: Annotated[
        str | None, typer.Option("--json", help="Write the result as JSON here.")
    ] = None,
    plot: Annotated[str | None, typer.Option("--plot", help="Write a PNG bar chart here.")] = None,
    address: AddressOpt = None,
    shard_bytes: Annotated[
        float | None,
        typer.Option(
            "--shard-bytes",
            min=1,
            help="Most text one file gives (one task reads); default max(64 MB, sample/#files).",
            show_default=False,
        ),
    ] = None,
    lp_method: LPMethodOpt = LPMethod.auto,
    after: AfterOpt = 0,
    bootstrap: BootstrapOpt = 0,
    confidence: Annotated[
        float, typer.Option("--confidence", min=0.5, max=0.999, help="Interval coverage.")
    ] = 0.9,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    quiet: QuietOpt = False,
) -> None:
    """Infer the training-data mixture of TOKENIZER over the sample CATEGORIES."""
    from forensics.infer import ForensicsError, infer_mixture
    from forensics.report import print_report

    try:
        with _Progress(enabled=not quiet) as prog:
            result = infer_mixture(
                tokenizer,
                categories,
                sample_bytes=sample_bytes,
                n_merges=_merges_option(merges),
                document_mode=document_mode,
                pattern=pattern,
                solver=solver.value,
                shard_bytes=int(shard_bytes) if shard_bytes else None,
                address=address,
                on_count_progress=prog.count,
                on_lp_progress=prog.lp,
                on_bootstrap_progress=prog.bootstrap,
                method=lp_method.value,
                after=after,
                bootstrap=bootstrap,
                confidence=confidence,
                seed=seed,
            )
    except ForensicsError as e:
        raise _fail(str(e)) from None
    err = _err_console()
    for w in result.warnings:
        err.print(f"[yellow]warning:[/yellow] {escape(w)}", highlight=False)
    con = Console()
    print_report(result, con, warnings=False)
    if result.interval_method:
        con.print(
            f"{100 * (result.confidence or 0):.0f}% intervals: {escape(result.interval_method)}",
            highlight=False,
        )
    _write_outputs(result, json_out, plot)


@app.command()
def demo(
    categories: Annotated[
        Path | None,
        typer.Option(
            "--categories",
            help="Folder of category files (default: the bundled data/sample).",
            show_default=False,
        ),
    ] = None,
    n: Annotated[int, typer.Option("--n", min=2, help="Number of categories in the mixture.")] = 5,
    names: Annotated[
        str | None, typer.Option("--names", help="Comma-separated categories (overrides --n).")
    ] = None,
    vocab_size: VocabOpt = 4000,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the categories, weights and split.")
    ] = 0,
    bytes_per_category: Annotated[
        int,
        typer.Option(
            "--bytes-per-category",
            min=1000,
            help="Training text per category (average; --no-pipeline only).",
        ),
    ] = 150_000,
    use_pipeline: Annotated[
        bool,
        typer.Option(
            "--pipeline/--no-pipeline",
            help="Run the corpus pipeline and 'bpe train' on its shards first (default), or "
            "train directly on the raw sample files.",
        ),
    ] = True,
    workdir: Annotated[
        Path | None,
        typer.Option("--workdir", help="Keep the pipeline output, shards and tokenizer here."),
    ] = None,
    solver: SolverOpt = Solver.highs,
    json_out: Annotated[
        str | None, typer.Option("--json", help="Write truth and estimate here.")
    ] = None,
    address: AddressOpt = None,
    lp_method: LPMethodOpt = LPMethod.auto,
    quiet: QuietOpt = False,
) -> None:
    """The main job on the bundled sample: the corpus pipeline cleans and shards it, a BPE is
    trained on a known mixture of its shards, and the mixture is inferred back."""
    import tempfile

    from forensics.demo import DEFAULT_SAMPLE_DIR, run_demo, run_pipeline_demo
    from forensics.infer import ForensicsError
    from forensics.report import diagnostics_panel

    chosen = [c.strip() for c in names.split(",") if c.strip()] if names else None
    try:
        with _Progress(enabled=not quiet) as prog, tempfile.TemporaryDirectory() as tmp:
            common = dict(
                n=n,
                names=chosen,
                vocab_size=vocab_size,
                seed=seed,
                solver=solver.value,
                address=address,
                on_count_progress=prog.count,
                on_lp_progress=prog.lp,
                method=lp_method.value,
            )
            if use_pipeline:
                res = run_pipeline_demo(
                    categories or DEFAULT_SAMPLE_DIR,
                    workdir=workdir or tmp,
                    progress=None if quiet else lambda m: _err_console().print(escape(m)),
                    **common,
                )
            else:
                res = run_demo(
                    categories or DEFAULT_SAMPLE_DIR,
                    bytes_per_category=bytes_per_category,
                    workdir=workdir,
                    **common,
                )
    except ForensicsError as e:
        raise _fail(str(e)) from None
    out = Console()
    table = Table(
        title=f"Demo, seed {res.seed}: true vs inferred",
        title_justify="left",
    )
    table.add_column("category")
    table.add_column("true %", justify="right")
    table.add_column("estimated %", justify="right")
    table.add_column("error (pts)", justify="right")
    for c in sorted(res.names, key=lambda c: -res.truth[c]):
        t, e = res.truth[c], res.estimate[c]
        table.add_row(c, f"{100 * t:.2f}", f"{100 * e:.2f}", f"{100 * (e - t):+.2f}")
    out.print(table)
    k = len(res.names)
    random_mse = 2 * (k - 1) / (k * k * (k + 1))  # E[MSE] of a uniform guess on the simplex
    out.print(
        f"log10 MSE: [bold]{res.log10_mse:.2f}[/bold]  "
        f"(a uniform random guess: {math.log10(random_mse):.2f} in expectation)"
    )
    out.print(diagnostics_panel(res.result))
    for w in res.result.warnings:
        _err_console().print(f"[yellow]warning:[/yellow] {escape(w)}", highlight=False)
    if json_out:
        import fsspec

        try:
            with fsspec.open(json_out, "w", encoding="utf-8", auto_mkdir=True) as fh:
                fh.write(res.to_json() + "\n")
        except OSError as e:
            raise _fail(f"{json_out}: cannot write the JSON output: {e}") from None


class Setting(str, Enum):
    all = "all"
    languages = "languages"
    code = "code"
    mixed = "mixed"


def _pool(cats: dict[str, list[str]], setting: Setting) -> dict[str, list[str]]:
    """Categories of a setting: code = names starting with "code", languages = the others."""
    if setting in (Setting.all, Setting.mixed):
        return cats
    code = setting == Setting.code
    return {k: v for k, v in cats.items() if k.startswith("code") == code}


@app.command()
def experiment(
    categories: CategoriesOpt,
    out: Annotated[str, typer.Option("--out", help="Output folder or URL for the results.")],
    n: Annotated[int, typer.Option("--n", min=2, help="Categories per trial.")] = 5,
    trials: Annotated[int, typer.Option("--trials", min=1, help="Number of trials.")] = 20,
    vocab_size: VocabOpt = 30000,
    bytes_per_category: Annotated[
        float,
        typer.Option(
            "--bytes-per-category",
            help="Attacker text per category (random whole documents); the training side "
            "gets the rest of the category (--split rest) or the other half of 2x this "
            "(--split halves).",
        ),
    ] = 1e6,
    train_bytes: Annotated[
        float | None,
        typer.Option(
            "--train-bytes",
            help="Training mixture size per trial (default n x bytes-per-category; "
            "--split halves: n x bytes-per-category / 2). A category whose share exceeds its "
            "training text gives all of it (the truth is the bytes used).",
            show_default=False,
        ),
    ] = None,
    split: Annotated[
        str,
        typer.Option("--split", help="rest (attacker fixed, training the rest) or halves."),
    ] = "rest",
    trainer: Annotated[
        str,
        typer.Option(
            "--trainer", help="bytelevel-digits (paper), gpt2 (byte-level) or sentencepiece."
        ),
    ] = "bytelevel-digits",
    merges: Annotated[
        str, typer.Option("--merges", help="T: a number, 'auto' (from the data) or 'all'.")
    ] = "auto",
    after: AfterOpt = 0,
    withhold: Annotated[
        int,
        typer.Option("--withhold", min=0, help="Categories trained on but hidden from the attack."),
    ] = 0,
    extend: Annotated[
        int,
        typer.Option(
            "--extend",
            min=0,
            help="Extension experiment: add this many merges trained on a second mixture to "
            "the base tokenizer and recover that mixture (0: off).",
        ),
    ] = 0,
    bootstrap: BootstrapOpt = 0,
    setting: Annotated[
        Setting, typer.Option("--setting", help="Which categories to draw from.")
    ] = Setting.all,
    baselines: Annotated[
        bool, typer.Option("--baselines/--no-baselines", help="Run Random, TEE and TC too.")
    ] = True,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the whole experiment.")] = 0,
    weights: Annotated[
        str | None,
        typer.Option(
            "--weights",
            help="Fixed mixture instead of random draws, e.g. en=0.5,ko=0.3,ja=0.2 (sums to 1).",
            show_default=False,
        ),
    ] = None,
    address: AddressOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Controlled experiments: train tokenizers on known mixtures, attack them, score methods."""
    from forensics.experiment import (
        ExperimentConfig,
        ExperimentError,
        run_experiment,
        summary_dict,
        write_results,
    )
    from forensics.infer import ForensicsError, resolve_categories

    try:
        pool = _pool(resolve_categories(categories), setting)
        T = _merges_option(merges)
        fixed = _weights_option(weights) if weights else None
        if fixed is not None:
            n = len(fixed)
        cfg = ExperimentConfig(
            n=n,
            trials=trials,
            vocab_size=vocab_size,
            bytes_per_category=int(bytes_per_category),
            train_bytes=int(train_bytes) if train_bytes else None,
            split=split,
            trainer=trainer,
            merges=T,
            after=after,
            withhold=withhold,
            extend=extend,
            bootstrap=bootstrap,
            baselines=baselines,
            seed=seed,
            weights=fixed,
        )
        cfg.check(list(pool))
    except (ExperimentError, ForensicsError) as e:
        raise _fail(str(e)) from None
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_err_console(),
        disable=quiet,
    )
    with progress:
        task = progress.add_task("trials", total=trials)

        def on_trial(rec: dict) -> None:
            progress.update(
                task,
                advance=1,
                description=f"trials (last: {rec['log10_mse']['attack']:.2f})",
            )

        try:
            records = run_experiment(cfg, pool, address=address, on_trial=on_trial)
        except (ExperimentError, ForensicsError) as e:
            raise _fail(str(e)) from None
    paths = write_results(records, out)
    summ = summary_dict(records)
    table = Table(
        title=f"{trials} trials, n = {n}, {setting.value}, {trainer}, vocab {vocab_size}",
        title_justify="left",
    )
    for col in ("method", "log10 MSE mean ± std", "median", "attack's MSE is smaller by"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for m, v in summ["methods"].items():
        ratio = v.get("attack_mse_ratio")
        table.add_row(
            m,
            f"{v['mean']:.2f} ± {v['std']:.2f}",
            f"{v['median']:.2f}",
            f"{ratio:,.0f}x" if ratio else "",
        )
    con = Console()
    con.print(table)
    if summ["coverage"] is not None:
        kind = "calibrated" if summ["calibrated"] else "uncalibrated"
        con.print(
            f"bootstrap {int(100 * cfg.confidence)}% intervals ({kind}) cover the truth in "
            f"{100 * summ['coverage']:.1f}% of (trial, category) pairs; the raw estimate ± z·sd "
            f"in {100 * summ['coverage_raw']:.1f}%"
        )
    con.print(f"merges not explained (violated share), mean: {summ['violated_share']:.3f}")
    for k, p in paths.items():
        con.print(f"{k}: {p}")


if __name__ == "__main__":
    app()
