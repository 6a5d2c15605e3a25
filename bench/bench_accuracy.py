"""Accuracy of the attack on disjoint halves, by number of merges T (issue 2; issue 3 extends it).

For each seed: draw weights uniformly from the simplex over the categories, split every
category's documents (``2 x --bytes`` read from ../shared/corpus) into disjoint train / attack
halves, train a byte-level BPE (vocab ``--vocab``) on the weighted mixture of the train halves,
count the attack halves once over all merges, and solve the LP at each T of ``--merges``.
Prints one line per seed (log10 MSE of byte proportions per T, LP seconds) and the median.

    python bench/bench_accuracy.py --seeds 0,1,2,3,4,5,6 --merges 2000,all
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from forensics.categories import sample_text, split_documents  # noqa: E402
from forensics.counting import (  # noqa: E402
    BPEModel,
    TokenHistories,
    build_trajectories,
    category_events,
)
from forensics.infer import count_texts  # noqa: E402
from forensics.lp import solve_mixture  # noqa: E402
from forensics.pretokenize import Pretokenizer  # noqa: E402
from forensics.tokenizer_io import load_merge_list  # noqa: E402
from forensics.training import mixture_sample, train_bpe  # noqa: E402
from pipeline.readers import ReadErrors  # noqa: E402

SHARED = ROOT.parent / "shared" / "corpus"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--categories", default="en,ko,ja,ru,code-python")
    ap.add_argument("--bytes", type=float, default=1e6, help="train and attack bytes per category")
    ap.add_argument("--seeds", default="0,1,3")
    ap.add_argument("--merges", default="2000,all", help="comma-separated T values or 'all'")
    ap.add_argument("--vocab", type=int, default=30000)
    args = ap.parse_args()
    cats = args.categories.split(",")
    per = int(args.bytes)
    docs = {}
    for c in cats:
        errors = ReadErrors()
        docs[c] = sample_text(str(SHARED / f"{c}.jsonl.gz"), sample_bytes=2 * per, errors=errors)
        if errors.has_file_errors:
            raise SystemExit(f"{c}: {errors.warnings()}")
    results: dict[str, list[float]] = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        weights = dict(
            zip(cats, np.random.default_rng(seed).dirichlet(np.ones(len(cats))), strict=True)
        )
        train, attack = {}, {}
        for c in cats:
            train[c], attack[c] = split_documents(docs[c], 0.5, seed=seed)
        texts, used = mixture_sample(train, weights, total_bytes=per * len(cats) // 2)
        ml = load_merge_list_from_json(train_bpe(texts, args.vocab))
        model = BPEModel(ml.merges, ml.base, ml.alphabet)
        pre = Pretokenizer.from_spec(ml.pretokenizer)
        hist = TokenHistories(model)
        events = []
        for c in cats:
            events.append(category_events(model, count_texts(model, pre, attack[c]), hist))
        truth = np.array([used[c] for c in cats], dtype=float)
        truth /= truth.sum()
        line = [f"seed {seed} ({len(ml.merges)} merges):"]
        for t in args.merges.split(","):
            T = len(ml.merges) if t == "all" else int(t)
            tr = build_trajectories(model, cats, events, T)
            t0 = time.perf_counter()
            res = solve_mixture(tr)
            score = float(np.log10(np.mean((res.alpha_bytes - truth) ** 2)))
            results.setdefault(t, []).append(score)
            line.append(f"T={t}: {score:.2f} ({time.perf_counter() - t0:.1f} s LP)")
        print("  ".join(line), flush=True)
    for t, scores in results.items():
        print(
            f"T={t}: median log10 MSE {np.median(scores):.2f}, mean {np.mean(scores):.2f} "
            f"over {len(scores)} mixtures"
        )


def load_merge_list_from_json(tokenizer_json: str):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokenizer.json"
        path.write_text(tokenizer_json, encoding="utf-8")
        return load_merge_list(str(path))


if __name__ == "__main__":
    main()
