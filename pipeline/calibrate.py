"""Print the distribution of the filter signals on a corpus, to derive per-language thresholds.

    python -m pipeline.calibrate ../shared/corpus/ko.jsonl.gz [--lang ko]

The documents are normalised like the pipeline does (NFC, full-width map, whitespace) and the
statistics computed the way the filters compute them: words are whitespace-separated (eojeol),
the Gopher repetition fractions use datatrove's own helpers. For each signal the script prints
quantiles and a suggested threshold: the 1st percentile for lower bounds, the 99th for upper
bounds (a clean reference corpus should lose about 1 % of its documents per signal), which
``pipeline/configs/default.yaml`` then uses, rounded outward (see ``pipeline/README.md``).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pyarrow as pa

__all__ = ["document_stats", "main"]

# (signal, direction): "min" -> threshold is a lower bound (suggest q01), "max" -> q99
SIGNALS = [
    ("hangul_share", "min"),
    ("lang_score", "min"),
    ("n_words", "min"),
    ("mean_word_len_lo", "min"),
    ("mean_word_len_hi", "max"),
    ("alpha_words_ratio", "min"),
    ("jamo_ratio", "max"),
    ("spam_terms", "max"),
    ("line_punct_ratio", "min"),
    ("short_line_ratio(<=10)", "max"),
    ("dup_line_char_ratio", "max"),
    ("newline_per_word", "max"),
    ("dup_line_frac", "max"),
    ("dup_line_char_frac", "max"),
    ("top_2_gram", "max"),
    ("top_3_gram", "max"),
    ("top_4_gram", "max"),
    ("dup_5_gram", "max"),
    ("dup_6_gram", "max"),
    ("dup_8_gram", "max"),
    ("dup_10_gram", "max"),
]


def document_stats(texts: list[str]) -> dict[str, np.ndarray]:
    """Per-document signals (arrays aligned with ``texts``, already normalised text)."""
    from datatrove.pipeline.filters.gopher_repetition_filter import (
        find_all_duplicate,
        find_duplicates,
        find_top_duplicate,
        get_n_grams,
    )
    from datatrove.utils.text import TERMINAL_PUNCTUATION

    from pipeline.filters import KoreanFilter
    from pipeline.langid import LanguageID

    t = pa.table(
        {"text": texts, "n_bytes": [len(x.encode()) for x in texts], "lang": ["ko"] * len(texts)}
    )
    t = LanguageID(hangul_override=None).modify(t.drop_columns(["lang"]))
    _, scores = KoreanFilter().decide(
        t.set_column(t.schema.get_field_index("lang"), "lang", pa.array(["ko"] * len(texts)))
    )
    out: dict[str, list[float]] = {k: [] for k, _ in SIGNALS}
    out["hangul_share"] = t["hangul_share"].to_pylist()
    out["lang_score"] = t["lang_score"].to_pylist()
    out["jamo_ratio"] = scores["jamo_ratio"].to_pylist()
    out["spam_terms"] = scores["spam_terms"].to_pylist()
    stop = tuple(TERMINAL_PUNCTUATION)
    for text in texts:
        words = text.split()
        n = max(len(words), 1)
        lens = [len(w) for w in words] or [0]
        out["n_words"].append(len(words))
        out["mean_word_len_lo"].append(float(np.mean(lens)))
        out["mean_word_len_hi"].append(float(np.mean(lens)))
        out["alpha_words_ratio"].append(sum(any(c.isalpha() for c in w) for w in words) / n)
        lines = [x for x in text.split("\n") if x.strip()] or [""]
        out["line_punct_ratio"].append(sum(x.endswith(stop) for x in lines) / len(lines))
        out["short_line_ratio(<=10)"].append(sum(len(x) <= 10 for x in lines) / len(lines))
        flat = max(len(text.replace("\n", "")), 1)
        out["dup_line_char_ratio"].append(find_duplicates(lines)[1] / flat)
        out["newline_per_word"].append(text.count("\n") / n)
        all_lines = [x for x in text.split("\n")]
        d, c = find_duplicates(all_lines)
        out["dup_line_frac"].append(d / max(len(all_lines), 1))
        out["dup_line_char_frac"].append(c / max(len(text), 1))
        for k in (2, 3, 4):
            grams = get_n_grams(words, k)
            out[f"top_{k}_gram"].append(
                find_top_duplicate(grams) / max(len(text), 1) if grams else 0.0
            )
        for k in (5, 6, 8, 10):
            out[f"dup_{k}_gram"].append(find_all_duplicate(words, k) / max(len(text), 1))
    return {k: np.asarray(v, dtype=float) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", help="input files (JSONL/Parquet/txt, globs)")
    ap.add_argument("--text-field", default="text")
    ap.add_argument("--limit", type=int, default=0, help="at most this many documents")
    args = ap.parse_args(argv)

    from pipeline.normalize import Normalize
    from pipeline.readers import expand_paths, iter_documents

    texts = []
    for url in expand_paths(args.paths):
        for doc in iter_documents(url, text_field=args.text_field):
            if doc.text.strip():
                texts.append(doc.text)
            if args.limit and len(texts) >= args.limit:
                break
    if not texts:
        print("no documents", file=sys.stderr)
        return 2
    t = pa.table({"text": texts, "n_bytes": [0] * len(texts)})
    texts = Normalize().modify(t)["text"].to_pylist()
    stats = document_stats(texts)
    qs = [0.01, 0.05, 0.10, 0.50, 0.90, 0.95, 0.99]
    print(f"{len(texts)} documents, {sum(len(x.encode()) for x in texts) / 1e6:.2f} MB")
    head = "signal".ljust(24) + "".join(f"q{int(q * 100):02d}".rjust(9) for q in qs) + "  suggested"
    print(head)
    for name, direction in SIGNALS:
        v = stats[name]
        qv = np.quantile(v, qs)
        sug = qv[0] if direction == "min" else qv[-1]
        row = name.ljust(24) + "".join(f"{x:9.3f}" for x in qv)
        print(f"{row}  {direction} {sug:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
