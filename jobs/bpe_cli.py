"""``mixtrace bpe``: train byte-level BPE tokenizers from the pipeline's shards, extend one,
report on several. Mounted by the main CLI with ``app.add_typer(bpe_app, name="bpe")``::

    mixtrace bpe train shards/ --vocab-size 64000 --pretokenizer gpt2 --mix ko=0.6,en=0.3,code*=0.1 --out tok/
    mixtrace bpe extend base-tokenizer/ shards-ko/ --add 20000 --out tok-ko/
    mixtrace bpe report tok/ other-tok/ --categories cats.yaml --out report/

Bad input (shards without a text column, an empty mixture, a vocab size below the alphabet,
a base that is not byte-level BPE, ...) prints one red line naming the culprit; exit code 2.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["app"]

app = typer.Typer(
    name="bpe",
    add_completion=False,
    no_args_is_help=True,
    help="Train byte-level BPE tokenizers on Parquet shards, extend one, report on several.",
    pretty_exceptions_enable=False,
)

AddressOpt = Annotated[
    str | None,
    typer.Option("--address", help="Ray cluster address (else RAY_ADDRESS, else a local Ray)."),
]
MixOpt = Annotated[
    str | None,
    typer.Option(
        "--mix",
        help="Byte mixture over --mix-column values, e.g. ko=0.6,en=0.3,code*=0.1 "
        "(fnmatch patterns; weights are normalised).",
    ),
]
MixColumnOpt = Annotated[
    str, typer.Option("--mix-column", help="Shard column the --mix keys match (lang, source...).")
]


@app.callback()
def _group() -> None:
    """Train byte-level BPE tokenizers on Parquet shards, extend one, report on several."""


def _fail(message: str) -> typer.Exit:
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/bold red] {escape(message)}")
    return typer.Exit(2)


@app.command()
def train(
    shards: Annotated[list[str], typer.Argument(help="Parquet shards: folders, globs, files.")],
    vocab_size: Annotated[
        int, typer.Option("--vocab-size", help="Tokens in all, the 256 bytes included.")
    ],
    out: Annotated[str, typer.Option("--out", "-o", help="Output folder (or fsspec URL).")],
    pretokenizer: Annotated[
        str, typer.Option("--pretokenizer", help="gpt2, cl100k or bytelevel-digits.")
    ] = "gpt2",
    mix: MixOpt = None,
    mix_column: MixColumnOpt = "lang",
    min_count: Annotated[
        int, typer.Option("--min-count", min=1, help="Drop pretokens counted fewer times.")
    ] = 1,
    min_frequency: Annotated[
        int, typer.Option("--min-frequency", min=0, help="Stop when the best pair is rarer.")
    ] = 0,
    text_field: Annotated[str, typer.Option("--text-field")] = "text",
    address: AddressOpt = None,
) -> None:
    """Count pretokens on Ray and train a byte-level BPE: OUT/tokenizer.json, counts/, report."""
    from pipeline.bpe.count import BPEInputError
    from pipeline.bpe.train import train_from_shards

    try:
        res = train_from_shards(
            shards,
            vocab_size,
            pretokenizer=pretokenizer,
            mix=mix,
            mix_column=mix_column,
            text_field=text_field,
            min_count=min_count,
            min_frequency=min_frequency,
            out=out,
            address=address,
        )
    except BPEInputError as e:
        raise _fail(str(e)) from None
    c, t = res.report["counting"], res.report["training"]
    con = Console()
    con.print(
        f"{c['shards']} shard(s), {c['total_bytes'] / 1e6:.1f} MB counted into "
        f"{c['words']:,} pretokens in {c['timings']['total']:.1f} s; "
        f"{t['merges']:,} merges in {t['timings']['train']:.1f} s -> {escape(out)}/tokenizer.json"
    )
    if c.get("mixture_weights"):
        table = Table("category", "asked", "obtained", "MB")
        for k, w in c["mixture_weights"].items():
            table.add_row(
                k,
                f"{w:.3f}",
                f"{c['true_mixture'].get(k, 0):.3f}",
                f"{c['bytes'].get(k, 0) / 1e6:.2f}",
            )
        con.print(table)
    if "warning" in t:
        Console(stderr=True).print(f"[yellow]warning:[/yellow] {escape(t['warning'])}")


@app.command()
def extend(
    base: Annotated[str, typer.Argument(help="Byte-level BPE: tokenizer.json or folder.")],
    shards: Annotated[list[str], typer.Argument(help="Parquet shards of the new text.")],
    add: Annotated[int, typer.Option("--add", min=1, help="Tokens to add.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Output folder.")],
    script: Annotated[
        str,
        typer.Option(
            "--script",
            help="hangul: only merges touching Hangul syllables (other text encodes as "
            "before); any: no restriction.",
        ),
    ] = "hangul",
    mix: MixOpt = None,
    mix_column: MixColumnOpt = "lang",
    min_frequency: Annotated[int, typer.Option("--min-frequency", min=1)] = 2,
    check: Annotated[
        list[str] | None,
        typer.Option(
            "--check", help="Text files (.txt/.jsonl[.gz]/.parquet) that must encode as before."
        ),
    ] = None,
    address: AddressOpt = None,
) -> None:
    """Append merges learned on SHARDS (base merges pre-applied) to BASE: OUT/tokenizer.json."""
    from pipeline.bpe.count import BPEInputError
    from pipeline.bpe.extend import extend_tokenizer

    try:
        texts = _read_texts(check or [])
        res = extend_tokenizer(
            base,
            shards,
            add,
            script=script,
            mix=mix,
            mix_column=mix_column,
            min_frequency=min_frequency,
            check_texts=texts,
            out=out,
            address=address,
        )
    except BPEInputError as e:
        raise _fail(str(e)) from None
    r = res.report
    same = sum(c["identical"] for c in r["unchanged_checks"])
    Console().print(
        f"{r['base_vocab_size']:,} + {r['added_tokens']:,} tokens -> {escape(out)}/tokenizer.json; "
        f"unreachable new tokens: {len(r['unreachable_new_tokens'])}; "
        f"check texts encoded as before: {same}/{len(r['unchanged_checks'])}"
    )
    if "warning" in r:
        Console(stderr=True).print(f"[yellow]warning:[/yellow] {escape(r['warning'])}")


def _read_texts(paths: list[str]) -> list[str]:
    from pipeline.bpe.count import BPEInputError
    from pipeline.readers import ReadErrors, expand_paths, iter_documents

    texts: list[str] = []
    errors = ReadErrors()
    try:
        files = expand_paths(paths) if paths else []
    except (FileNotFoundError, ValueError) as e:
        raise BPEInputError(str(e)) from None
    for f in files:
        texts.extend(d.text for d in iter_documents(f, errors=errors) if d.text)
    if errors.has_file_errors:
        raise BPEInputError("; ".join(errors.warnings()))
    return texts


@app.command()
def report(
    tokenizers: Annotated[list[str], typer.Argument(help="Tokenizers (any format infer reads).")],
    categories: Annotated[
        str, typer.Option("--categories", help="Category spec: YAML file or folder.")
    ],
    out: Annotated[str, typer.Option("--out", "-o", help="Output folder.")],
    sample_bytes: Annotated[float, typer.Option("--sample-bytes", help="Text per category.")] = 1e6,
    english: Annotated[
        str, typer.Option("--english", help="Category parity is measured against.")
    ] = "en",
    parallel_key: Annotated[
        str,
        typer.Option(
            "--parallel-key",
            help="Field pairing translated documents (first path component dropped); '' : none.",
        ),
    ] = "source",
) -> None:
    """Bytes per token, fertility, parity vs English, vocabulary by script, unreachable and
    never-used tokens: OUT/report.json, report.md, report.png."""
    from pipeline.bpe.count import BPEInputError
    from pipeline.bpe.report import quality_report, write_report

    try:
        reports = quality_report(
            tokenizers,
            categories,
            sample_bytes=int(sample_bytes),
            english=english,
            parallel_key=parallel_key or None,
        )
    except BPEInputError as e:
        raise _fail(str(e)) from None
    paths = write_report(reports, out)
    cats = list(reports[0].categories)
    table = Table("tokenizer", *[f"{c}\nbytes/token" for c in cats], "never used")
    for r in reports:
        table.add_row(
            r.name,
            *[f"{r.categories[c]['bytes_per_token']:.2f}" for c in cats],
            f"{r.never_used / r.vocab_size:.0%}",
        )
    Console().print(table)
    Console().print(f"report: {escape(paths['md'])}, {escape(paths['png'])}")
