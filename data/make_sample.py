"""Cut the small sample corpora shipped in data/sample/ from the shared corpora.

    python data/make_sample.py [--src ../shared/corpus] [--out data/sample] [--budget 300000]

For each category, the first documents of ``{src}/{name}.jsonl.gz`` are copied, in order,
until ``--budget`` UTF-8 bytes of text are collected; the document that crosses the budget
is cut at its last line boundary that fits (``\\n`` kept), so every category holds the same
amount of text (at most ``--budget`` bytes). Records keep their ``id``, ``text`` and
``source`` fields. Output is gzip with a zero timestamp and no file name in the header, so
running the script again gives byte-identical files. Standard library only.

Prints a Markdown table of text bytes, documents and compressed sizes per category (used
in data/PROVENANCE.md).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import sys
from pathlib import Path

CATEGORIES = [
    "ko",
    "en",
    "ja",
    "zh",
    "de",
    "fr",
    "es",
    "ru",
    "code-python",
    "code-c",
    "code-go",
    "code-rust",
    "code-java",
    "code-javascript",
]
HERE = Path(__file__).resolve().parent
DEFAULT_SRC = HERE.parent.parent / "shared" / "corpus"  # <repo>/../shared/corpus
DEFAULT_OUT = HERE / "sample"
DEFAULT_BUDGET = 300_000


def cut_at_line(text: str, max_bytes: int) -> str:
    """Longest prefix of ``text`` ending at a line boundary within ``max_bytes`` bytes."""
    window = text.encode("utf-8")[:max_bytes]
    nl = window.rfind(b"\n")
    return window[: nl + 1].decode("utf-8") if nl >= 0 else ""


def cut_category(src: Path, budget: int) -> list[dict]:
    records: list[dict] = []
    total = 0
    with gzip.open(src, "rt", encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            text = rec["text"]
            n = len(text.encode("utf-8"))
            if total + n > budget:
                text = cut_at_line(text, budget - total)
                if text:
                    records.append({"id": rec["id"], "text": text, "source": rec["source"]})
                break
            records.append({"id": rec["id"], "text": text, "source": rec["source"]})
            total += n
            if total >= budget:
                break
    return records


def write_gzip_jsonl(path: Path, records: list[dict]) -> None:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        for rec in records:
            gz.write(json.dumps(rec, ensure_ascii=False).encode("utf-8") + b"\n")
    path.write_bytes(buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--budget", type=int, default=DEFAULT_BUDGET, help="UTF-8 text bytes")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    print("| category | documents | text bytes | last document cut | compressed bytes |")
    print("|---|---:|---:|---|---:|")
    total_text = total_gz = 0
    for name in CATEGORIES:
        src = args.src / f"{name}.jsonl.gz"
        if not src.is_file():
            print(f"missing source file: {src}", file=sys.stderr)
            return 1
        records = cut_category(src, args.budget)
        dst = args.out / f"{name}.jsonl.gz"
        write_gzip_jsonl(dst, records)
        n_text = sum(len(r["text"].encode("utf-8")) for r in records)
        gz = dst.stat().st_size
        total_text += n_text
        total_gz += gz
        # the source's n-th document is cut when its text differs from the source record
        with gzip.open(src, "rt", encoding="utf-8") as fh:
            last_src = None
            for i, line in enumerate(fh):
                if i == len(records) - 1:
                    last_src = json.loads(line)["text"]
                    break
        cut = "yes" if records and last_src != records[-1]["text"] else "no"
        print(f"| {name} | {len(records)} | {n_text:,} | {cut} | {gz:,} |")
    print(f"| **total** | | {total_text:,} | | {total_gz:,} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
