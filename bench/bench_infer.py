"""Benchmark of `mixtrace infer` (issue 2): GPT-2 against 8 categories x 3 MB.

Prints, in one run:
  * the end-to-end inference through Ray (load, counting, trajectories, LP at T merges), with
    the LP's rounds, rows and whether it was proven optimal;
  * counting over all 50,000 GPT-2 merges in-process (the core alone), and the peak RSS;
  * a naive per-step replay (apply merge t to every word, recount every pair) against the fast
    counter on the same small slice, both timed, and checked to be equal.

    python bench/bench_infer.py [--merges 30000] [--sample-bytes 3e6] [--lp-time-limit 600]

Goals (issue 2): counting <= 30 s, LP (T = 30,000) <= 60 s to proven optimality, peak <= 2 GB.
"""

from __future__ import annotations

import argparse
import os
import resource
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CATS = ["en", "de", "fr", "es", "ru", "ja", "zh", "ko"]


class RssSampler(threading.Thread):
    """Peak resident memory of this process plus all Ray worker processes, sampled."""

    def __init__(self, period: float = 0.2):
        super().__init__(daemon=True)
        self.period = period
        self.peak_total = 0
        self.peak_self = 0
        self._halt = threading.Event()

    @staticmethod
    def _rss(pid: str) -> int:
        from pipeline.bpe.trainer import status_bytes

        return status_bytes("VmRSS", pid) or 0

    def run(self) -> None:
        me = str(os.getpid())
        while not self._halt.is_set():
            total = 0
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        cmd = f.read()
                except OSError:
                    continue
                if pid == me or b"ray::" in cmd or b"default_worker.py" in cmd:
                    total += self._rss(pid)
            self.peak_total = max(self.peak_total, total)
            self.peak_self = max(self.peak_self, self._rss(me))
            self._halt.wait(self.period)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def read_docs(cat: str, limit: int) -> list[str]:
    from forensics.categories import sample_text
    from pipeline.readers import ReadErrors

    return sample_text(
        str(SHARED / "corpus" / f"{cat}.jsonl.gz"), sample_bytes=limit, errors=ReadErrors()
    )


def naive_vs_fast(ml, slice_bytes: int, T: int) -> None:
    from forensics.counting import (
        BPEModel,
        brute_force_counts,
        build_trajectories,
        category_events,
        count_tokens,
    )
    from forensics.pretokenize import Pretokenizer

    model = BPEModel(ml.merges[:T], ml.base, ml.alphabet)
    pre = Pretokenizer.from_spec(ml.pretokenizer)
    lines = [ln for d in read_docs("en", slice_bytes) for ln in pre.lines(d)]
    wc = Counter(pre.pretokenize_many(lines))
    t0 = time.perf_counter()
    ev = category_events(model, count_tokens(model, wc, slice_bytes))
    tr = build_trajectories(model, ["en"], [ev], T)
    fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    brute = brute_force_counts(model, wc, T)
    naive = time.perf_counter() - t0
    same = all(tr.counts_at(0, t) == brute[t - 1] for t in (1, T // 2, T))
    print(
        f"naive replay vs fast counter, {slice_bytes / 1e3:.0f} KB of en, T = {T}: "
        f"naive {naive:.2f} s, fast {fast:.3f} s, speed-up {naive / fast:.0f}x, "
        f"equal at t=1,T/2,T: {same}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--merges", type=int, default=30000, help="T for the LP")
    ap.add_argument("--sample-bytes", type=float, default=3e6)
    ap.add_argument("--lp-time-limit", type=float, default=600)
    ap.add_argument("--lp-method", default="auto", choices=["auto", "tree", "rows", "kelley"])
    ap.add_argument("--skip-e2e", action="store_true")
    args = ap.parse_args()

    from forensics.counting import BPEModel, TokenHistories, category_events, count_tokens
    from forensics.infer import infer_mixture
    from forensics.pretokenize import Pretokenizer
    from forensics.tokenizer_io import load_merge_list

    gpt2 = str(SHARED / "tokenizers" / "gpt2")
    cats = {c: [str(SHARED / "corpus" / f"{c}.jsonl.gz")] for c in CATS}
    sampler = RssSampler()
    sampler.start()

    # -- counting over all 50,000 merges, the core in-process --------------------------------
    t0 = time.perf_counter()
    ml = load_merge_list(gpt2)
    t_load = time.perf_counter() - t0
    model = BPEModel(ml.merges, ml.base, ml.alphabet)
    pre = Pretokenizer.from_spec(ml.pretokenizer)
    hist = TokenHistories(model)
    t0 = time.perf_counter()
    n_bytes = 0
    for c in CATS:
        docs = read_docs(c, int(args.sample_bytes))
        lines = [ln for d in docs for ln in pre.lines(d)]
        nb = sum(len(ln.encode()) for ln in lines)
        n_bytes += nb
        category_events(model, count_tokens(model, Counter(pre.pretokenize_many(lines)), nb), hist)
    t_count = time.perf_counter() - t0
    print(
        f"GPT-2 ({len(ml.merges)} merges, loaded in {t_load:.1f} s), {len(CATS)} categories, "
        f"{n_bytes / 1e6:.1f} MB: counting in-process (1 core) {t_count:.1f} s "
        f"= {n_bytes / 1e6 / t_count:.2f} MB/s"
    )
    del model, hist

    naive_vs_fast(ml, 100_000, 300)

    # -- end to end through Ray ---------------------------------------------------------------
    if not args.skip_e2e:
        t0 = time.perf_counter()
        res = infer_mixture(
            gpt2,
            cats,
            sample_bytes=args.sample_bytes,
            n_merges=args.merges,
            time_limit=args.lp_time_limit,
            method=args.lp_method,
        )
        wall = time.perf_counter() - t0
        d = res.to_dict()
        diag = d["diagnostics"]
        print(
            f"end to end through Ray, T = {args.merges}, LP method {args.lp_method}: {wall:.1f} s wall"
        )
        print("  timings:", {k: round(v, 2) for k, v in d.get("timings", {}).items()})
        print(
            "  LP:",
            {
                k: diag.get(k)
                for k in ("rounds", "rows", "pair_slacks", "optimal", "objective", "solver")
            },
        )
        top = sorted(d["mixture"].items(), key=lambda kv: -kv[1])
        print("  mixture (bytes):", ", ".join(f"{k} {v:.3f}" for k, v in top))
    sampler.stop()
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"peak RSS: driver {ru:.0f} MB (getrusage); driver + Ray workers sampled "
        f"{sampler.peak_total / 2**20:.0f} MB"
    )


if __name__ == "__main__":
    main()
