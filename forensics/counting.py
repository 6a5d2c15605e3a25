"""Pair-count trajectories of a known merge list over sample text (pure: arrays in, arrays out).

For a category's sample, ``c_p(t)`` is the number of adjacent occurrences of pair ``p`` after
applying merges ``1..t-1`` to every pretoken. Replaying the merge list is independent per word,
and inside a word the merges that build one final token touch only that token's span, so a
word's history is

* the *internal* history of each of its final tokens (BPE run on the token's own base symbols,
  the same for every occurrence of that token), plus
* the history of each *boundary* between adjacent final tokens, which depends only on the right
  edge of the left token and the left edge of the right token over time.

So a category reduces to two count tables, final-token unigrams and adjacent final-token
bigrams (obtained from a fast ``tokenizers`` encode), and every vocabulary token's history is
computed once per tokenizer. The cost is independent of ``T × #pairs``: it is linear in the
number of distinct final tokens and bigrams times the token lengths.

The output is an event list per category: ``(pair, step, delta)``, meaning "merge ``step``
changed the count of ``pair`` by ``delta``" (step 0 holds the initial counts). ``c_p(t)`` is
the sum of the deltas of ``p`` at steps ``< t``. :func:`brute_force_counts` is the slow, obvious
oracle this is tested against.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BPEModel",
    "CategoryCounts",
    "CategoryEvents",
    "TokenHistories",
    "Trajectories",
    "brute_force_counts",
    "build_trajectories",
    "category_events",
    "choose_merges",
    "count_tokens",
    "merge_category_counts",
]


def _bytes_to_unicode() -> dict[int, str]:
    """The GPT-2 byte-level alphabet: every byte gets a printable unicode character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs, strict=True)}


_B2U = _bytes_to_unicode()


class BPEModel:
    """A merge list compiled to integer ids, with a fast ``tokenizers`` encoder.

    Token ids: the base symbols (sorted) are ``0..A-1``; merge ``r`` (1-based rank) produces
    token ``A + r - 1``. Words are given in the *symbol space* of the model: byte-level unicode
    strings for ``base == "byte"``, plain strings for ``base == "char"``.
    """

    def __init__(
        self,
        merges: Sequence[tuple[bytes, bytes]],
        base: str,
        alphabet: Iterable[bytes] | None = None,
    ):
        if base not in ("byte", "char"):
            raise ValueError(f"base must be 'byte' or 'char', not {base!r}")
        self.base = base
        if base == "byte":
            alpha = [bytes([b]) for b in range(256)]
        else:
            if alphabet is None:
                raise ValueError("a char-level model needs its alphabet")
            alpha = sorted(set(alphabet))
        self.tokens: list[bytes] = list(alpha)
        self.id_of: dict[bytes, int] = {t: i for i, t in enumerate(self.tokens)}
        self.n_base = len(self.tokens)
        parts = np.empty((len(merges), 2), dtype=np.int64)
        self.rank: dict[tuple[int, int], int] = {}
        for r, (a, b) in enumerate(merges, start=1):
            ia, ib = self.id_of.get(a), self.id_of.get(b)
            if ia is None or ib is None:
                missing = a if ia is None else b
                raise ValueError(
                    f"merge {r} {a!r} + {b!r}: part {missing!r} is not produced earlier"
                )
            new = a + b
            if new in self.id_of:
                raise ValueError(f"merge {r} {a!r} + {b!r}: token {new!r} is produced twice")
            self.id_of[new] = len(self.tokens)
            self.tokens.append(new)
            parts[r - 1] = (ia, ib)
            self.rank[(ia, ib)] = r
        self.parts = parts
        self.n_merges = len(merges)
        self.vocab_size = len(self.tokens)
        self._encoder = None
        self._alpha_chars: frozenset[str] | None = None

    # -- symbol space ---------------------------------------------------------------------
    def symbol_str(self, token: bytes) -> str:
        if self.base == "byte":
            return "".join(_B2U[b] for b in token)
        return token.decode("utf-8")

    def base_ids(self, token: bytes) -> list[int]:
        if self.base == "byte":
            return list(token)  # byte b has id b
        return [self.id_of[ch.encode("utf-8")] for ch in token.decode("utf-8")]

    def word_ids(self, word: str) -> list[int]:
        """Base symbol ids of a word given in symbol space."""
        if self.base == "byte":
            inv = _U2B
            return [inv[ch] for ch in word]
        return [self.id_of[ch.encode("utf-8")] for ch in word]

    def split_unknown(self, word_counts: Mapping[str, int]) -> Mapping[str, int]:
        """Split words at characters outside a char-level alphabet (they never merge)."""
        alpha = self._alpha_chars
        if alpha is None:
            alpha = self._alpha_chars = frozenset(
                t.decode("utf-8") for t in self.tokens[: self.n_base]
            )
        out: Counter = Counter()
        for w, f in word_counts.items():
            if alpha.issuperset(w):
                out[w] += f
                continue
            run: list[str] = []
            for ch in w:
                if ch in alpha:
                    run.append(ch)
                elif run:
                    out["".join(run)] += f
                    run = []
            if run:
                out["".join(run)] += f
        return out

    @property
    def encoder(self):
        """A ``tokenizers.Tokenizer`` applying exactly this merge list to whole words."""
        if self._encoder is None:
            from tokenizers import Tokenizer
            from tokenizers.models import BPE

            vocab = {self.symbol_str(t): i for i, t in enumerate(self.tokens)}
            merges = [
                (self.symbol_str(self.tokens[a]), self.symbol_str(self.tokens[b]))
                for a, b in self.parts.tolist()
            ]
            self._encoder = Tokenizer(BPE(vocab=vocab, merges=merges, fuse_unk=False))
        return self._encoder

    def encode_words(self, words: Sequence[str]) -> list[list[int]]:
        if not words:
            return []
        return [e.ids for e in self.encoder.encode_batch(list(words), add_special_tokens=False)]

    def truncated(self, n_merges: int) -> BPEModel:
        merges = [(self.tokens[a], self.tokens[b]) for a, b in self.parts[:n_merges].tolist()]
        return BPEModel(merges, self.base, self.tokens[: self.n_base])


_U2B = {u: b for b, u in _B2U.items()}


def _sum_int(index: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Exact int64 group sums (bincount in float64 is exact below 2**53; checked)."""
    out = np.bincount(index, weights=values, minlength=size)
    if out.size and np.abs(out).max() >= 2**53:
        exact = np.zeros(size, dtype=np.int64)
        np.add.at(exact, index, values)
        return exact
    return out.astype(np.int64)


# ----------------------------------------------------------------------------------------
# Counting final tokens (the part that touches text; runs in Ray tasks)
# ----------------------------------------------------------------------------------------
@dataclass
class CategoryCounts:
    """Final-token unigram and adjacent-bigram counts of a category sample."""

    uni_ids: np.ndarray  # int64 token ids (sorted, unique)
    uni_counts: np.ndarray  # int64
    bi_keys: np.ndarray  # int64 left*V + right (sorted, unique)
    bi_counts: np.ndarray  # int64
    vocab_size: int
    n_bytes: int = 0
    n_words: int = 0


def count_tokens(
    model: BPEModel, word_counts: Mapping[str, int], n_bytes: int = 0
) -> CategoryCounts:
    """Encode each distinct word once and count final tokens and adjacent token pairs.

    For a character-level model, characters outside its alphabet (SentencePiece byte fallback)
    never take part in a merge: words are split at them, as SentencePiece training does.
    """
    if model.base == "char":
        word_counts = model.split_unknown(word_counts)
    words = [w for w in word_counts if w]
    freqs = np.fromiter((word_counts[w] for w in words), dtype=np.int64, count=len(words))
    enc = model.encode_words(words)
    lens = np.fromiter((len(e) for e in enc), dtype=np.int64, count=len(enc))
    V = model.vocab_size
    if len(enc) == 0 or lens.sum() == 0:
        z = np.zeros(0, dtype=np.int64)
        return CategoryCounts(z, z, z, z, V, n_bytes, int(freqs.sum()))
    ids = np.fromiter((i for e in enc for i in e), dtype=np.int64, count=int(lens.sum()))
    w = np.repeat(freqs, lens)
    uni = _sum_int(ids, w, V)
    uni_ids = np.flatnonzero(uni)
    # bigrams: positions whose next position is in the same word
    ends = np.cumsum(lens)
    same = np.ones(len(ids), dtype=bool)
    same[ends - 1] = False  # last token of each word has no right neighbour in the word
    left = np.flatnonzero(same)
    keys = ids[left] * V + ids[left + 1]
    bk, inv = np.unique(keys, return_inverse=True)
    bc = _sum_int(inv, w[left], len(bk))
    return CategoryCounts(
        uni_ids.astype(np.int64),
        uni[uni_ids],
        bk.astype(np.int64),
        bc,
        V,
        n_bytes,
        int(freqs.sum()),
    )


def merge_category_counts(parts: Sequence[CategoryCounts]) -> CategoryCounts:
    """Sum the counts of several shards of one category."""
    if not parts:
        raise ValueError("no shard counts to merge")
    V = parts[0].vocab_size

    def _sum(keys: list[np.ndarray], vals: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        k = np.concatenate(keys)
        v = np.concatenate(vals)
        uk, inv = np.unique(k, return_inverse=True)
        return uk.astype(np.int64), _sum_int(inv, v, len(uk))

    ui, uc = _sum([p.uni_ids for p in parts], [p.uni_counts for p in parts])
    bk, bc = _sum([p.bi_keys for p in parts], [p.bi_counts for p in parts])
    return CategoryCounts(
        ui, uc, bk, bc, V, sum(p.n_bytes for p in parts), sum(p.n_words for p in parts)
    )


# ----------------------------------------------------------------------------------------
# Per-token histories (once per tokenizer)
# ----------------------------------------------------------------------------------------
class TokenHistories:
    """Internal pair events and edge profiles of vocabulary tokens, computed on demand.

    For token ``τ``, BPE is run on its own base symbols (lowest rank first, leftmost first).
    Recorded: internal events ``(step, left, right, delta)`` including the step-0 initial
    pairs, the left-edge profile ``[(step, symbol)]`` and the right-edge profile.
    """

    def __init__(self, model: BPEModel):
        self.model = model
        self._cache: dict[int, tuple] = {}

    def get(self, tok: int):
        h = self._cache.get(tok)
        if h is None:
            h = self._compute(tok)
            self._cache[tok] = h
        return h

    def _compute(self, tok: int):
        m = self.model
        rank = m.rank
        nb = m.n_base
        sym = m.base_ids(m.tokens[tok])
        ev: list[tuple[int, int, int, int]] = [(0, a, b, 1) for a, b in itertools.pairwise(sym)]
        le = [(0, sym[0])]
        re = [(0, sym[-1])]
        while len(sym) > 1:
            best, k = 0, -1
            for j in range(len(sym) - 1):
                r = rank.get((sym[j], sym[j + 1]))
                if r is not None and (k < 0 or r < best):
                    best, k = r, j
            if k < 0:
                break
            a, b = sym[k], sym[k + 1]
            new = nb + best - 1
            if k > 0:
                p = sym[k - 1]
                ev.append((best, p, a, -1))
                ev.append((best, p, new, 1))
            ev.append((best, a, b, -1))
            if k + 2 < len(sym):
                n = sym[k + 2]
                ev.append((best, b, n, -1))
                ev.append((best, new, n, 1))
            sym[k : k + 2] = [new]
            if k == 0:
                le.append((best, new))
            if k == len(sym) - 1:
                re.append((best, new))
        if len(sym) != 1 or sym[0] != tok:
            raise ValueError(
                f"token {m.tokens[tok]!r} (id {tok}) is not reachable from its own bytes "
                "with this merge list, but the encoder produced it"
            )
        return ev, le, re

    def csr(self, toks: np.ndarray, which: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """Concatenate field ``which`` (0 events, 1 left edge, 2 right edge) of ``toks``."""
        rows: list = []
        lens = np.empty(len(toks), dtype=np.int64)
        for i, t in enumerate(toks.tolist()):
            h = self.get(t)[which]
            lens[i] = len(h)
            rows.extend(h)
        ncol = 4 if which == 0 else 2
        arr = np.array(rows, dtype=np.int64).reshape(len(rows), ncol)
        return lens, [arr[:, j] for j in range(arr.shape[1])]


def _gather_csr_index(lens: np.ndarray) -> np.ndarray:
    """Row index of each item of a CSR layout with the given row lengths."""
    return np.repeat(np.arange(len(lens)), lens)


@dataclass
class CategoryEvents:
    """``(pair key, step, delta)`` events of one category, sorted by (key, step)."""

    keys: np.ndarray  # int64 pair key left*V + right
    steps: np.ndarray  # int64
    deltas: np.ndarray  # int64
    total_pairs: int  # P_i: pairs at step 0
    n_bytes: int


def _aggregate(keys: np.ndarray, steps: np.ndarray, deltas: np.ndarray, n_steps: int):
    comb = keys * (n_steps + 1) + steps
    uk, inv = np.unique(comb, return_inverse=True)
    d = _sum_int(inv, deltas, len(uk))
    nz = d != 0
    uk, d = uk[nz], d[nz]
    return uk // (n_steps + 1), uk % (n_steps + 1), d


def category_events(
    model: BPEModel, counts: CategoryCounts, histories: TokenHistories | None = None
) -> CategoryEvents:
    """All pair-count events of a category from its final-token counts (vectorised)."""
    hist = histories or TokenHistories(model)
    V = model.vocab_size
    N = model.n_merges
    # internal events of each final token, weighted by its count
    lens, (st, a, b, d) = hist.csr(counts.uni_ids, 0)
    w = np.repeat(counts.uni_counts, lens)
    keys = [a * V + b]
    steps = [st]
    deltas = [d * w]
    # boundary events for each adjacent token bigram
    if len(counts.bi_keys):
        L = counts.bi_keys // V
        R = counts.bi_keys % V
        c = counts.bi_counts
        uL, invL = np.unique(L, return_inverse=True)
        uR, invR = np.unique(R, return_inverse=True)
        lenRE, (reS, reY) = hist.csr(uL, 2)
        lenLE, (leS, leY) = hist.csr(uR, 1)
        ptrRE = np.concatenate([[0], np.cumsum(lenRE)])
        ptrLE = np.concatenate([[0], np.cumsum(lenLE)])
        nL = lenRE[invL]
        nR = lenLE[invR]
        bL = _gather_csr_index(nL)
        offL = np.arange(len(bL)) - np.repeat(np.cumsum(nL) - nL, nL)
        idxL = ptrRE[invL][bL] + offL
        bR = _gather_csr_index(nR)
        offR = np.arange(len(bR)) - np.repeat(np.cumsum(nR) - nR, nR)
        idxR = ptrLE[invR][bR] + offR
        eb = np.concatenate([bL, bR])
        es = np.concatenate([reS[idxL], leS[idxR]])
        side = np.concatenate([np.zeros(len(bL), np.int8), np.ones(len(bR), np.int8)])
        ey = np.concatenate([reY[idxL], leY[idxR]])
        order = np.lexsort((side, es, eb))
        eb, es, side, ey = eb[order], es[order], side[order], ey[order]
        pos = np.arange(len(eb))
        # forward fill the current left / right symbol; every group starts with both
        # initial symbols at step 0 (side 0 first), so the fill never crosses groups wrongly
        iL = np.maximum.accumulate(np.where(side == 0, pos, 0))
        iR = np.maximum.accumulate(np.where(side == 1, pos, 0))
        curL, curR = ey[iL], ey[iR]
        # the last event of each (bigram, step) run holds the state after that step
        last = np.ones(len(eb), dtype=bool)
        last[:-1] = (eb[1:] != eb[:-1]) | (es[1:] != es[:-1])
        # the first event of each group is the side-0 initial one: its run is (b, 0)
        rb, rs = eb[last], es[last]
        pair_after = curL[last] * V + curR[last]
        rc = c[rb]
        first_run = np.ones(len(rb), dtype=bool)
        first_run[1:] = rb[1:] != rb[:-1]
        keys.append(pair_after)
        steps.append(rs)
        deltas.append(rc)
        prev = np.flatnonzero(~first_run)
        keys.append(pair_after[prev - 1])
        steps.append(rs[prev])
        deltas.append(-rc[prev])
    k, s, dd = _aggregate(np.concatenate(keys), np.concatenate(steps), np.concatenate(deltas), N)
    total = int(dd[s == 0].sum())
    return CategoryEvents(k, s, dd, total, counts.n_bytes)


# ----------------------------------------------------------------------------------------
# All categories together: the trajectories the LP reads
# ----------------------------------------------------------------------------------------
@dataclass
class Trajectories:
    """Pair-count trajectories of n categories over the first T merges.

    * ``pairs``: (P, 2) token ids of each pair id; ``vocab_size``
    * ``merge_pair``: (T,) pair id of merge t = 1..T (index t-1), -1 if absent from every sample
    * per category i: ``ev_pair[i]``, ``ev_step[i]``, ``ev_cum[i]``: events sorted by (pair, step)
      with the cumulative count of the pair after the event (int64)
    * ``merge_counts``: (n, T) c_{i,m(t)}(t)
    * ``total_pairs``: (n,) P_i; ``n_bytes``: (n,)
    """

    names: list[str]
    pairs: np.ndarray
    vocab_size: int
    n_steps: int
    merge_pair: np.ndarray
    ev_pair: list[np.ndarray]
    ev_step: list[np.ndarray]
    ev_cum: list[np.ndarray]
    merge_counts: np.ndarray
    total_pairs: np.ndarray
    n_bytes: np.ndarray

    @property
    def n(self) -> int:
        return len(self.names)

    def count(self, i: int, pair: np.ndarray, t: np.ndarray) -> np.ndarray:
        """c_{i,pair}(t) for arrays of pair ids and steps (vectorised lookup)."""
        pair = np.asarray(pair, dtype=np.int64)
        t = np.asarray(t, dtype=np.int64)
        key = self.event_keys(i)
        if len(key) == 0:
            return np.zeros(np.broadcast(pair, t).shape, dtype=np.int64)
        q = pair * (self.n_steps + 2) + (t - 1)
        j = np.searchsorted(key, q, side="right") - 1
        ok = j >= 0
        jj = np.where(ok, j, 0)
        ok &= self.ev_pair[i][jj] == pair
        return np.where(ok, self.ev_cum[i][jj], 0)

    def event_keys(self, i: int) -> np.ndarray:
        cache = self.__dict__.setdefault("_keys", {})
        if i not in cache:
            cache[i] = self.ev_pair[i].astype(np.int64) * (self.n_steps + 2) + self.ev_step[i]
        return cache[i]

    def counts_at(self, i: int, t: int) -> dict[tuple[int, int], int]:
        """All nonzero pair counts of category i at step t (slow; for tests and debugging)."""
        P = len(self.pairs)
        c = self.count(i, np.arange(P), np.full(P, t))
        nz = np.flatnonzero(c)
        return {(int(self.pairs[p, 0]), int(self.pairs[p, 1])): int(c[p]) for p in nz}


def build_trajectories(
    model: BPEModel, names: Sequence[str], events: Sequence[CategoryEvents], n_steps: int
) -> Trajectories:
    """Give every pair that ever occurs an integer id and index the events per category."""
    V = model.vocab_size
    T = min(n_steps, model.n_merges)
    merge_keys = model.parts[:T, 0] * V + model.parts[:T, 1]
    # keep only events that can matter for steps 1..T (events at steps < T)
    sel = [e.steps < T for e in events]
    all_keys = np.unique(
        np.concatenate([e.keys[s] for e, s in zip(events, sel, strict=True)] + [merge_keys])
    )
    pairs = np.stack([all_keys // V, all_keys % V], axis=1)
    ev_pair, ev_step, ev_cum = [], [], []
    for e, s in zip(events, sel, strict=True):
        k, st, d = e.keys[s], e.steps[s], e.deltas[s]
        pid = np.searchsorted(all_keys, k)
        cum = np.cumsum(d)
        # cumulative within each pair group
        start = np.ones(len(pid), dtype=bool)
        start[1:] = pid[1:] != pid[:-1]
        base = np.maximum.accumulate(np.where(start, np.arange(len(pid)), 0))
        offset = (cum - d)[base]
        ev_pair.append(pid.astype(np.int32))
        ev_step.append(st.astype(np.int32))
        ev_cum.append((cum - offset).astype(np.int64))
    mp = np.searchsorted(all_keys, merge_keys).astype(np.int64)
    tr = Trajectories(
        names=list(names),
        pairs=pairs,
        vocab_size=V,
        n_steps=T,
        merge_pair=mp,
        ev_pair=ev_pair,
        ev_step=ev_step,
        ev_cum=ev_cum,
        merge_counts=np.zeros((len(events), T), dtype=np.int64),
        total_pairs=np.array([e.total_pairs for e in events], dtype=np.int64),
        n_bytes=np.array([e.n_bytes for e in events], dtype=np.int64),
    )
    steps = np.arange(1, T + 1)
    for i in range(len(events)):
        tr.merge_counts[i] = tr.count(i, mp, steps)
    present = tr.merge_counts.sum(axis=0) > 0
    tr.merge_pair = np.where(present, mp, -1)
    return tr


# ----------------------------------------------------------------------------------------
# The oracle
# ----------------------------------------------------------------------------------------
def choose_merges(merge_counts: np.ndarray, *, min_count: float = 30.0, window: int = 200) -> int:
    """T chosen from the data: the last step before the merges' own counts in the attack
    samples (summed over categories) fall, as a running median over ``window`` steps, below
    ``min_count`` occurrences. Past that point a merge's count has a relative Poisson noise
    above 1/√30 ≈ 18 % and its constraints mostly carry sampling noise: on 7 mixtures of 5
    categories × 1 MB the error was flat from T = 2,000 to all 29,744 merges (median log10 MSE
    −4.35 and −4.44; bench/bench_accuracy.py), while the LP's time grows with T. Never fewer
    than ``min(window, T)`` steps."""
    c = np.asarray(merge_counts, dtype=np.float64)
    T = len(c)
    if T <= window:
        return T
    # running median via a strided view (T × window floats at most a few MB)
    v = np.lib.stride_tricks.sliding_window_view(c, window)
    med = np.median(v, axis=1)  # med[k]: steps k..k+window-1
    low = np.flatnonzero(med < min_count)
    return T if len(low) == 0 else int(max(window, low[0] + window // 2))


def brute_force_counts(
    model: BPEModel, word_counts: Mapping[str, int], n_steps: int
) -> list[dict[tuple[int, int], int]]:
    """Apply merge t to every word, recount every pair, for t = 1..T (slow; test oracle).

    Returns ``counts[t-1]`` = pair counts before merge t is applied.
    """
    words = [(model.word_ids(w), f) for w, f in word_counts.items() if w]
    out = []
    for t in range(1, min(n_steps, model.n_merges) + 1):
        c: Counter = Counter()
        for sym, f in words:
            for a, b in itertools.pairwise(sym):
                c[(a, b)] += f
        out.append(dict(c))
        a, b = (int(x) for x in model.parts[t - 1])
        new = model.n_base + t - 1
        for sym, _ in words:
            j = 0
            while j < len(sym) - 1:
                if sym[j] == a and sym[j + 1] == b:
                    sym[j : j + 2] = [new]
                j += 1
    return out
