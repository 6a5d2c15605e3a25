"""Language ID: accuracy, speed and load time of the offline libraries, on the shared corpus.

    python bench/bench_langid.py [--docs 400] [--chars 2000] [--prefixes 200,500,1000,2000,0]

Prints, per language of ``../shared/corpus`` (the first ``--docs`` documents of each file,
normalised as the pipeline does, cut to ``--chars`` characters): the share labelled with the
file's language by py3langid (per document, the library's own ``classify``), by mixtrace's
batch classifier (py3langid's model, a batch at a time) and, if it is installed, by lingua
(``pip install lingua-language-detector``; not a dependency: 96 MB, ~1 GB and 19 s to load its
models in every worker); MB/s per core of each and its load time. Then the batch classifier's
accuracy by prefix length (0 = whole text), the table behind ``langid.max_chars`` in
``pipeline/README.md``. One process, one core.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CORPUS = ROOT.parent / "shared" / "corpus"
LANGS = ("ko", "en", "ja", "zh", "de", "fr", "es", "ru")


def load(n_docs: int) -> dict[str, list[str]]:
    import pyarrow as pa

    from pipeline.normalize import Normalize

    out = {}
    for lang in LANGS:
        with gzip.open(CORPUS / f"{lang}.jsonl.gz", "rt", encoding="utf-8") as fh:
            texts = [json.loads(line)["text"] for _, line in zip(range(n_docs), fh, strict=False)]
        table = pa.table({"text": texts, "n_bytes": [0] * len(texts)})
        out[lang] = Normalize()(table)[0]["text"].to_pylist()
    return out


def accuracy_row(name: str, docs: dict[str, list[str]], classify, load_s: float) -> None:
    cells, nbytes, seconds = [], 0, 0.0
    for lang, texts in docs.items():
        t = time.process_time()
        labels = classify(texts)
        seconds += time.process_time() - t
        nbytes += sum(len(x.encode("utf-8")) for x in texts)
        cells.append(f"{sum(lab == lang for lab in labels) / len(texts):.3f}")
    print(
        f"| {name} | " + " | ".join(cells) + f" | {nbytes / 1e6 / seconds:.2f} | {load_s:.1f} s |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=400)
    ap.add_argument("--chars", type=int, default=2000)
    ap.add_argument("--prefixes", default="200,500,1000,2000,0")
    args = ap.parse_args()
    full = load(args.docs)
    docs = {k: [t[: args.chars] for t in v] for k, v in full.items()}
    print(
        f"{sum(map(len, docs.values()))} documents, first {args.chars} characters, one core\n\n"
        "| library | " + " | ".join(LANGS) + " | MB/s/core | load |\n"
        "|---|" + "---|" * (len(LANGS) + 2)
    )
    t = time.perf_counter()
    from pipeline.langid import batch_classifier, load_identifier

    ident = load_identifier()
    load_s = time.perf_counter() - t
    accuracy_row("py3langid", docs, lambda ts: [ident.classify(x)[0] for x in ts], load_s)
    t = time.perf_counter()
    batch = batch_classifier()  # built on the loaded model: its load is both times
    batch_s = load_s + time.perf_counter() - t
    accuracy_row("batch classifier", docs, lambda ts: batch.classify(ts)[0], batch_s)
    try:
        t = time.perf_counter()
        from lingua import LanguageDetectorBuilder

        detector = LanguageDetectorBuilder.from_all_languages().with_preloaded_language_models()
        detector = detector.build()
        lingua_s = time.perf_counter() - t

        def lingua_labels(texts: list[str]) -> list[str]:
            out = detector.detect_languages_in_parallel_of(texts)
            return [lab.iso_code_639_1.name.lower() if lab else "und" for lab in out]

        accuracy_row("lingua", docs, lingua_labels, lingua_s)
    except ImportError:
        print("| lingua | not installed (pip install lingua-language-detector) |")

    print("\nbatch classifier by prefix length (0 = whole text)\n")
    print("| chars | " + " | ".join(LANGS) + " | seconds |\n|---|" + "---|" * (len(LANGS) + 1))
    for chars in (int(x) for x in args.prefixes.split(",")):
        cells, seconds = [], 0.0
        for lang, texts in full.items():
            cut = [x[:chars] for x in texts] if chars else texts
            t = time.process_time()
            labels = batch.classify(cut)[0]
            seconds += time.process_time() - t
            cells.append(f"{sum(lab == lang for lab in labels) / len(cut):.3f}")
        print(f"| {chars or 'whole'} | " + " | ".join(cells) + f" | {seconds:.2f} |")


if __name__ == "__main__":
    main()
