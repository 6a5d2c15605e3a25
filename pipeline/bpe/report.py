"""Tokenizer quality report (``mixtrace bpe report``): how well tokenizers fit languages.

For each tokenizer (any format :func:`forensics.tokenizer_io.load_merge_list` reads: a
``tokenizer.json`` or folder, GPT-2 ``vocab.json`` + ``merges.txt``, tiktoken ranks,
SentencePiece BPE) and each category sample (a category spec as for ``mixtrace infer``):

* **bytes per token** and **tokens per character** of the sample;
* **fertility**: tokens per space-separated word (meaningless for Chinese/Japanese text,
  which has no spaces, and reported anyway);
* **parity against English** (Petrov et al. 2023): tokens of a document over the tokens of
  its English counterpart, on documents matched by a key (default: the ``source`` field with
  its first path component dropped, which pairs ``en-US/text/...`` with ``ko/text/...``);
  the number of pairs is reported, and the ratio of summed tokens is given. Where a
  translation dropped untranslated lines (the shared Korean set), parity is biased low; the
  comparison *between tokenizers* on the same pairs is not;
* **vocabulary by script**: each token's bytes decoded and classified (Hangul, Han, Kana,
  Latin, Cyrillic, ..., digits/punctuation/space, mixed, partial UTF-8 for byte fragments);
  and the share of the vocabulary each category uses;
* **unreachable tokens** (BPE on the token's own string does not give that token) and
  **never-used tokens** (no use in any sample).

Writes ``report.json``, ``report.md`` (tables) and ``report.png``.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .count import BPEInputError

__all__ = ["TokenizerReport", "quality_report", "script_of", "write_report"]

SCRIPT_ORDER = (
    "Hangul",
    "Han",
    "Kana",
    "Latin",
    "Cyrillic",
    "Greek",
    "Arabic",
    "other script",
    "mixed",
    "digits/punct/space",
    "partial UTF-8",
)


def _char_script(ch: str) -> str | None:
    """The script of a letter (None for digits, punctuation, spaces, symbols)."""
    if not ch.isalpha():
        return None
    name = unicodedata.name(ch, "")
    first = name.split(" ", 1)[0]
    if first == "HANGUL":
        return "Hangul"
    if first == "CJK" or name.startswith("IDEOGRAPHIC"):
        return "Han"
    if first in ("HIRAGANA", "KATAKANA"):
        return "Kana"
    if first in ("LATIN", "CYRILLIC", "GREEK", "ARABIC"):
        return first.capitalize()
    return "other script"


def script_of(token: bytes) -> str:
    """The script class of a token's bytes (see the module docstring)."""
    try:
        text = token.decode("utf-8")
    except UnicodeDecodeError:
        return "partial UTF-8"
    scripts = {s for s in map(_char_script, text) if s}
    if not scripts:
        return "digits/punct/space"
    return scripts.pop() if len(scripts) == 1 else "mixed"


@dataclass
class TokenizerReport:
    name: str
    source: str
    vocab_size: int
    categories: dict[str, dict[str, Any]]
    vocab_scripts: dict[str, float]
    unreachable: int
    never_used: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _parallel_key(value: str) -> str:
    return value.split("/", 1)[1] if "/" in value else value


def _read_category(
    urls: Sequence[str], sample_bytes: int, key_field: str | None
) -> tuple[list[str], list[str | None]]:
    """Documents (whole, in order) up to ``sample_bytes``, with their pairing keys."""
    from pipeline.readers import ReadErrors, iter_documents

    texts: list[str] = []
    keys: list[str | None] = []
    got = 0
    errors = ReadErrors()
    for url in urls:
        for doc in iter_documents(url, errors=errors, id_field=key_field or "id"):
            if not doc.text:
                continue
            texts.append(doc.text)
            keys.append(_parallel_key(doc.id) if key_field else None)
            got += doc.n_bytes
            if got >= sample_bytes:
                return texts, keys
    if errors.has_file_errors:
        raise BPEInputError("; ".join(errors.warnings()))
    return texts, keys


class _Encoder:
    """Token counts of documents under one merge list (distinct words encoded once)."""

    def __init__(self, source: str):
        from forensics.counting import BPEModel
        from forensics.merges import MergeListError
        from forensics.pretokenize import Pretokenizer
        from forensics.tokenizer_io import load_merge_list

        try:
            self.ml = load_merge_list(source)
        except (MergeListError, OSError, ValueError) as e:
            raise BPEInputError(f"{source}: {e}") from None
        self.model = BPEModel(self.ml.merges, self.ml.base, self.ml.alphabet)
        self.pre = Pretokenizer.from_spec(self.ml.pretokenizer)
        self.cache: dict[str, int] = {}

    def document_tokens(self, docs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(tokens per document, use count per token id). A character-level (SentencePiece)
        model's characters outside its alphabet count as byte-fallback tokens, one per
        UTF-8 byte (what Llama and Mistral do)."""
        per_doc = [self.pre.pretokenize(d) for d in docs]
        words = Counter(w for ws in per_doc for w in ws)
        wl = list(words)
        extra = dict.fromkeys(wl, 0)
        pieces: dict[str, list[str]] = {w: [w] for w in wl}
        if self.model.base == "char":
            alpha = frozenset(t.decode("utf-8") for t in self.model.tokens[: self.model.n_base])
            for w in wl:
                if alpha.issuperset(w):
                    continue
                parts, run = [], []
                for ch in w:
                    if ch in alpha:
                        run.append(ch)
                        continue
                    extra[w] += len(ch.encode("utf-8"))
                    if run:
                        parts.append("".join(run))
                        run = []
                if run:
                    parts.append("".join(run))
                pieces[w] = parts
        flat = sorted({p for ps in pieces.values() for p in ps})
        enc = dict(zip(flat, self.model.encode_words(flat), strict=True))
        lens = {w: extra[w] + sum(len(enc[p]) for p in pieces[w]) for w in wl}
        n = len(self.model.tokens)
        seqs = [(enc[p], words[w]) for w in wl for p in pieces[w]]
        ids = np.fromiter((t for e, _ in seqs for t in e), dtype=np.int64)
        weights = np.repeat([f for _, f in seqs], [len(e) for e, _ in seqs]) if seqs else []
        use = np.bincount(ids, weights=weights, minlength=n)[:n].astype(np.int64)
        return np.array([sum(lens[w] for w in ws) for ws in per_doc], dtype=np.int64), use

    def unreachable(self) -> int:
        toks = self.model.tokens
        strs = [self.model.symbol_str(t) for t in toks]
        enc = self.model.encode_words(strs)
        return sum(1 for i, e in enumerate(enc) if list(e) != [i])


def quality_report(
    tokenizers: Sequence[str],
    categories: str | Mapping[str, str | Sequence[str]],
    *,
    sample_bytes: int = 1_000_000,
    english: str = "en",
    parallel_key: str | None = "source",
) -> list[TokenizerReport]:
    """One :class:`TokenizerReport` per tokenizer over the category samples."""
    from forensics.infer import ForensicsInputError, resolve_categories

    if not tokenizers:
        raise BPEInputError("no tokenizer given")
    try:
        cats = resolve_categories(categories)
    except ForensicsInputError as e:
        raise BPEInputError(str(e)) from None
    samples = {c: _read_category(u, sample_bytes, parallel_key) for c, u in cats.items()}
    empty = [c for c, (t, _) in samples.items() if not t]
    if empty:
        raise BPEInputError(f"categories without text: {', '.join(empty)}")
    reports = []
    for source in tokenizers:
        enc = _Encoder(source)
        per_doc: dict[str, np.ndarray] = {}
        use_total = np.zeros(len(enc.model.tokens), dtype=np.int64)
        rows: dict[str, dict[str, Any]] = {}
        for c, (texts, _) in samples.items():
            toks, use = enc.document_tokens(texts)
            per_doc[c] = toks
            use_total += use
            n_tok = int(toks.sum())
            n_bytes = sum(len(t.encode("utf-8")) for t in texts)
            n_chars = sum(len(t) for t in texts)
            n_words = sum(len(t.split()) for t in texts)
            rows[c] = {
                "documents": len(texts),
                "bytes": n_bytes,
                "chars": n_chars,
                "words": n_words,
                "tokens": n_tok,
                "bytes_per_token": n_bytes / n_tok if n_tok else math.nan,
                "tokens_per_char": n_tok / n_chars if n_chars else math.nan,
                "fertility": n_tok / n_words if n_words else math.nan,
                "vocab_used": float(np.count_nonzero(use)) / len(use),
            }
        if english in samples and parallel_key:
            en_keys = {k: i for i, k in enumerate(samples[english][1]) if k}
            for c, (_, keys) in samples.items():
                pairs = [(i, en_keys[k]) for i, k in enumerate(keys) if k in en_keys]
                if not pairs:
                    rows[c]["parity"], rows[c]["parity_pairs"] = None, 0
                    continue
                num = sum(int(per_doc[c][i]) for i, _ in pairs)
                den = sum(int(per_doc[english][j]) for _, j in pairs)
                rows[c]["parity"] = num / den if den else None
                rows[c]["parity_pairs"] = len(pairs)
        scripts = Counter(script_of(t) for t in enc.model.tokens)
        n = len(enc.model.tokens)
        reports.append(
            TokenizerReport(
                name=enc.ml.name or str(source),
                source=str(source),
                vocab_size=n,
                categories=rows,
                vocab_scripts={s: scripts[s] / n for s in SCRIPT_ORDER if scripts[s]},
                unreachable=enc.unreachable(),
                never_used=int(np.count_nonzero(use_total == 0)),
            )
        )
    return reports


def _fmt(v: Any, spec: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return format(v, spec)


def write_report(reports: Sequence[TokenizerReport], out: str) -> dict[str, str]:
    """``out/report.json``, ``out/report.md``, ``out/report.png``; returns their paths."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    (root / "report.json").write_text(
        json.dumps([r.as_dict() for r in reports], indent=2, ensure_ascii=False), "utf-8"
    )
    cats = list(reports[0].categories)
    lines = ["# Tokenizer quality report", ""]
    metrics = [
        ("bytes per token", "bytes_per_token", ".2f"),
        ("tokens per character", "tokens_per_char", ".3f"),
        ("fertility (tokens per space-separated word)", "fertility", ".2f"),
        ("parity against English (matched documents)", "parity", ".2f"),
        ("share of the vocabulary used by the sample", "vocab_used", ".1%"),
    ]
    for title, key, spec in metrics:
        lines += [f"## {title}", "", "| tokenizer | " + " | ".join(cats) + " |"]
        lines.append("|---" * (len(cats) + 1) + "|")
        for r in reports:
            cells = [_fmt(r.categories[c].get(key), spec) for c in cats]
            lines.append(f"| {r.name} | " + " | ".join(cells) + " |")
        lines.append("")
    if any("parity_pairs" in r.categories[c] for r in reports for c in cats):
        pairs = {c: reports[0].categories[c].get("parity_pairs", 0) for c in cats}
        lines += [
            "Matched document pairs: " + ", ".join(f"{c} {n}" for c, n in pairs.items()),
            "",
        ]
    scripts = [s for s in SCRIPT_ORDER if any(s in r.vocab_scripts for r in reports)]
    lines += ["## vocabulary by script", "", "| tokenizer | vocab | " + " | ".join(scripts)]
    lines[-1] += " | unreachable | never used |"
    lines.append("|---" * (len(scripts) + 4) + "|")
    for r in reports:
        cells = [_fmt(r.vocab_scripts.get(s, 0.0), ".1%") for s in scripts]
        lines.append(
            f"| {r.name} | {r.vocab_size:,} | "
            + " | ".join(cells)
            + f" | {r.unreachable:,} | {r.never_used:,} ({r.never_used / r.vocab_size:.1%}) |"
        )
    (root / "report.md").write_text("\n".join(lines) + "\n", "utf-8")

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    width = 0.8 / len(reports)
    x = np.arange(len(cats))
    for k, r in enumerate(reports):
        for ax, key in ((axes[0], "bytes_per_token"), (axes[1], "parity")):
            vals = [r.categories[c].get(key) for c in cats]
            vals = [np.nan if v is None else v for v in vals]
            ax.bar(x + k * width, vals, width, label=r.name)
    for ax, title in (
        (axes[0], "bytes per token (higher: better)"),
        (axes[1], "parity vs English (lower: better)"),
    ):
        ax.set_xticks(x + 0.4 - width / 2, cats, rotation=45, ha="right")
        ax.set_title(title)
    axes[1].axhline(1.0, color="grey", lw=0.8)
    axes[0].legend(fontsize=8)
    bottom = np.zeros(len(reports))
    colors = plt.get_cmap("tab20").colors
    for i, s in enumerate(scripts):
        vals = np.array([r.vocab_scripts.get(s, 0.0) for r in reports])
        axes[2].bar([r.name for r in reports], vals, bottom=bottom, label=s, color=colors[i % 20])
        bottom += vals
    axes[2].set_title("vocabulary by script")
    axes[2].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    axes[2].tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(root / "report.png", dpi=110)
    plt.close(fig)
    return {k: str(root / f"report.{k}") for k in ("json", "md", "png")}
