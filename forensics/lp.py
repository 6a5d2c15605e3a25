"""The data-mixture linear program of Hayase et al. (2024), solved by lazy constraint generation.

Variables: mixture weights ``α_i ≥ 0`` (``Σ α_i = 1``), a slack ``v_t ≥ 0`` per merge step and a
slack ``v_p ≥ 0`` per competing pair. For every step ``t ≤ T`` and pair ``p ≠ m(t)``::

    Σ_i α_i (ĉ_{i,m(t)}(t) − ĉ_{i,p}(t)) + v_t + v_p ≥ 0,     minimise Σ v_t + Σ v_p

with ``ĉ = S · c / P_i`` (counts per ``S`` pairs of the category; scaling keeps late merges, whose
counts are ~1e-6 of the total, above solver tolerances).

There are ``T × #pairs`` constraints, so rows are generated lazily: solve with the rows found so
far, scan every (step, pair) for violations at the current solution, add the worst ones, repeat
until a full scan finds none — then the solution is optimal for the full LP.

The scan is vectorised. Between two of its events a pair's count is constant, so every pair's
α-weighted value is a step function over ``t``: a list of *segments* (value, first step, last
step), computed for all pairs at once with one ``bincount`` and a ``cumsum``. A segment is
violated iff its value exceeds the *minimum* over its steps of ``M(t) = merge value + v_t``,
which a sparse-table range-minimum query answers for all segments in O(1) each. Each violated
segment proposes its most violated step; per round we keep the most violated few per step.

Pure: arrays in, arrays out. Solvers: HiGHS through ``highspy`` with rows appended to the live
model (warm-started dual simplex), or any ``pulp`` solver (HiGHS or CBC) rebuilding the model
each round.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .counting import Trajectories

__all__ = [
    "LPResult",
    "MixtureLP",
    "available_solvers",
    "solve_mixture",
    "solve_mixture_kelley",
    "solve_mixture_tree",
]

log = logging.getLogger(__name__)

_HIGHS_BANNER_DONE = False


def _new_highs():
    """A silent ``highspy.Highs``. HiGHS prints a banner to fd 1 when the first instance of a
    process is created, before options can be set; that would land inside CLI output."""
    global _HIGHS_BANNER_DONE
    import highspy

    if _HIGHS_BANNER_DONE:
        h = highspy.Highs()
    else:
        sys.stdout.flush()
        saved = os.dup(1)
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 1)
                h = highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        _HIGHS_BANNER_DONE = True
    h.setOptionValue("output_flag", False)
    return h


@dataclass
class LPResult:
    alpha_pairs: np.ndarray  # α in pair units (sums to 1)
    alpha_bytes: np.ndarray  # α in byte units (sums to 1)
    objective: float  # Σ v in scaled units (per S pairs)
    rounds: int
    rows: int  # constraint rows in the final LP
    pair_slacks: int  # v_p columns created
    optimal: bool  # a final full scan found no violated constraint
    max_violation: float  # of the final scan
    solver: str
    steps_used: int  # merge steps that give constraints (present in some sample)
    timings: dict[str, float] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    step_slack: np.ndarray | None = None  # v_t, (T,)
    pair_slack: np.ndarray | None = None  # v_p, (number of pairs,)
    violated_share: float | None = None  # MixtureLP.violated_share at the solution
    after: int = 0  # merges 1..after were not constrained


def available_solvers() -> list[str]:
    out = []
    try:
        import highspy  # noqa: F401

        out.append("highs")
    except ImportError:
        pass
    try:
        import pulp

        names = pulp.listSolvers(onlyAvailable=True)
        if "HiGHS" in names:
            out.append("pulp-highs")
        if "PULP_CBC_CMD" in names:
            out.append("pulp-cbc")
    except ImportError:
        pass
    return out


class _SparseMin:
    """Range-minimum (value and position) over a fixed array, O(1) vectorised queries."""

    def __init__(self, a: np.ndarray):
        self.levels = [a.astype(np.float64)]
        self.args = [np.arange(len(a), dtype=np.int64)]
        k = 1
        while 2 * k <= len(a):
            prev, parg = self.levels[-1], self.args[-1]
            left, right = prev[: len(prev) - k], prev[k:]
            take_right = right < left
            self.levels.append(np.where(take_right, right, left))
            self.args.append(np.where(take_right, parg[k:], parg[: len(parg) - k]))
            k *= 2

    def query(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Minimum over the inclusive ranges [lo, hi] (0-based)."""
        n = hi - lo + 1
        lev = np.floor(np.log2(np.maximum(n, 1))).astype(np.int64)
        vals = np.empty(len(lo))
        args = np.empty(len(lo), dtype=np.int64)
        for j in np.unique(lev):
            sel = np.flatnonzero(lev == j)
            a, b = lo[sel], hi[sel] - (1 << j) + 1
            va, vb = self.levels[j][a], self.levels[j][b]
            right = vb < va
            vals[sel] = np.where(right, vb, va)
            args[sel] = np.where(right, self.args[j][b], self.args[j][a])
        return vals, args


class MixtureLP:
    """Holds the scan structures for one set of trajectories; :meth:`solve` runs the loop."""

    def __init__(self, tr: Trajectories, *, scale: float = 1e6, after: int = 0):
        t0 = time.perf_counter()
        if not 0 <= after < tr.n_steps:
            raise ValueError(f"after = {after} must be in [0, {tr.n_steps}) (the merges used)")
        self.after = after
        self.tr = tr
        self.n = tr.n
        self.T = tr.n_steps
        self.scale = scale
        if np.any(tr.total_pairs <= 0):
            bad = [tr.names[i] for i in np.flatnonzero(tr.total_pairs <= 0)]
            raise ValueError(f"categories with zero pairs cannot enter the LP: {', '.join(bad)}")
        self.norm = scale / tr.total_pairs.astype(np.float64)  # ĉ = c * norm_i
        # union of event rows (pair, step) over categories
        keys = [tr.event_keys(i) for i in range(self.n)]
        self.row_key = np.unique(np.concatenate(keys)) if keys else np.zeros(0, np.int64)
        mult = self.T + 2
        self.row_pair = self.row_key // mult
        self.row_step = self.row_key % mult
        # deltas of each category mapped onto union rows
        self.ev_row = []
        self.ev_delta = []
        for i in range(self.n):
            row = np.searchsorted(self.row_key, keys[i])
            cum = tr.ev_cum[i]
            d = cum.astype(np.float64).copy()
            same = np.zeros(len(cum), dtype=bool)
            same[1:] = tr.ev_pair[i][1:] == tr.ev_pair[i][:-1]
            d[1:][same[1:]] = (cum[1:] - cum[:-1])[same[1:]]
            self.ev_row.append(row)
            self.ev_delta.append(d)
        self.ev_row_all = np.concatenate(self.ev_row) if self.n else np.zeros(0, np.int64)
        self.ev_cat_all = np.concatenate(
            [np.full(len(r), i, dtype=np.int64) for i, r in enumerate(self.ev_row)]
        )
        self.ev_delta_all = np.concatenate(self.ev_delta)
        # segment extents: row r applies to steps [row_step+1, next_step] (1-based, inclusive)
        R = len(self.row_key)
        first = np.ones(R, dtype=bool)
        first[1:] = self.row_pair[1:] != self.row_pair[:-1]
        self.group_start = np.maximum.accumulate(np.where(first, np.arange(R), 0))
        last = np.ones(R, dtype=bool)
        last[:-1] = first[1:]
        end = np.empty(R, dtype=np.int64)
        end[:-1] = self.row_step[1:]
        end[last] = self.T
        # a merge pair competes only before its own step
        merge_step = np.full(len(tr.pairs), self.T + 1, dtype=np.int64)
        # (a merge absent from every sample at its step has count 0 from then on: no clipping)
        steps = np.arange(1, self.T + 1)
        has = tr.merge_pair >= 0
        merge_step[tr.merge_pair[has]] = steps[has]
        end = np.minimum(end, merge_step[self.row_pair] - 1)
        # constraints start after the first `after` merges (pre-applied: an extended vocabulary)
        self.seg_lo = np.maximum(self.row_step + 1, after + 1)
        self.seg_hi = end
        self.seg_ok = self.seg_lo <= self.seg_hi
        self.present = (tr.merge_pair >= 0) & (steps > after)
        self.merge_val_base = (tr.merge_counts * self.norm[:, None]).T  # (T, n)
        self.timings = {"setup": time.perf_counter() - t0}

    # -- scan ------------------------------------------------------------------------------
    def scan(
        self,
        alpha: np.ndarray,
        v_step: np.ndarray,
        v_pair: np.ndarray,
        tol: float,
        per_segment: int = 1,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Violated (step, pair) candidates at a solution: up to ``per_segment`` per segment.

        Returns (steps 1-based, pair ids, violation), unsorted.
        """
        w = alpha * self.norm
        R = len(self.row_key)
        d = np.bincount(
            self.ev_row_all, weights=w[self.ev_cat_all] * self.ev_delta_all, minlength=R
        )
        cs = np.cumsum(d)
        before = np.where(self.group_start > 0, cs[self.group_start - 1], 0.0)
        val = cs - before - v_pair[self.row_pair]
        M = self.merge_val_base @ alpha + v_step
        M = np.where(self.present, M, np.inf)
        rmq = _SparseMin(M)
        cand = np.flatnonzero(self.seg_ok & (val > tol))
        if len(cand) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        seg, step0, viol = _enumerate_violations(
            rmq, self.seg_lo[cand] - 1, self.seg_hi[cand] - 1, val[cand], per_segment, tol
        )
        return step0 + 1, self.row_pair[cand[seg]], viol

    def violated_share(self, alpha: np.ndarray) -> float:
        """Share of the constrained merges that are *not* the most frequent pair of the
        α-weighted attack counts (some pair beats them with no slack). Near 0 when the
        categories explain the merge list; it rises with sampling noise and with training data
        that no category covers."""
        steps, _, _ = self.scan(alpha, np.zeros(self.T), np.zeros(len(self.tr.pairs)), 1e-6, 1)
        n = int(self.present.sum())
        return len(np.unique(steps)) / n if n else 0.0

    def segment_coefficients(self) -> np.ndarray:
        """(R, n): the scaled count of each segment's pair per category (value = row @ α)."""
        R = len(self.row_key)
        C = np.zeros((R, self.n))
        for i in range(self.n):
            cs = np.cumsum(np.bincount(self.ev_row[i], weights=self.ev_delta[i], minlength=R))
            before = np.where(self.group_start > 0, cs[self.group_start - 1], 0.0)
            C[:, i] = (cs - before) * self.norm[i]
        return C

    def row_coefficients(self, steps: np.ndarray, pairs: np.ndarray) -> np.ndarray:
        """(k, n) α-coefficients ĉ_{i,m(t)}(t) − ĉ_{i,p}(t) of the given constraints."""
        out = np.empty((len(steps), self.n))
        for i in range(self.n):
            cp = self.tr.count(i, pairs, steps)
            cm = self.tr.merge_counts[i, steps - 1]
            out[:, i] = (cm - cp) * self.norm[i]
        return out


def _select(steps, pairs, viol, per_step: int, max_rows: int):
    """Keep the ``per_step`` most violated candidates of each step, at most ``max_rows``."""
    order = np.lexsort((-viol, steps))
    s = steps[order]
    first = np.ones(len(s), dtype=bool)
    first[1:] = s[1:] != s[:-1]
    start = np.maximum.accumulate(np.where(first, np.arange(len(s)), 0))
    rank_in_step = np.arange(len(s)) - start
    keep = order[rank_in_step < per_step]
    if len(keep) > max_rows:
        keep = keep[np.argsort(-viol[keep], kind="stable")[:max_rows]]
    return steps[keep], pairs[keep], viol[keep]


class _HighsBackend:
    """HiGHS through highspy: rows appended to the live model, warm-started re-solves."""

    name = "highs"

    def __init__(self, n: int, T: int, method: str = "simplex", threads: int | None = None):
        import highspy

        self.hp = highspy
        h = _new_highs()
        h.setOptionValue("solver", method)
        if threads:
            h.setOptionValue("threads", threads)
        inf = highspy.kHighsInf
        # α columns (cost 0, [0,1]) then v_t columns (cost 1, [0, inf))
        _add_cols(h, n, 0.0, 0.0, 1.0)
        _add_cols(h, T, 1.0, 0.0, inf)
        _add_rows(h, 1.0, 1.0, np.arange(n)[None, :], np.ones((1, n)))
        self.h = h
        self.n, self.T = n, T
        self.ncols = n + T
        self.inf = inf

    def add_pair_columns(self, k: int) -> None:
        _add_cols(self.h, k, 1.0, 0.0, self.inf)
        self.ncols += k

    def add_rows(self, coef: np.ndarray, step_cols: np.ndarray, pair_cols: np.ndarray) -> None:
        k, n = coef.shape
        idx = np.column_stack([np.tile(np.arange(n), (k, 1)), step_cols, pair_cols])
        _add_rows(self.h, 0.0, self.inf, idx, np.column_stack([coef, np.ones((k, 2))]))

    def solve(self) -> tuple[np.ndarray, float, str]:
        self.h.run()
        status = self.h.getModelStatus()
        x = np.asarray(self.h.getSolution().col_value)
        return (
            x,
            float(self.h.getInfo().objective_function_value),
            self.h.modelStatusToString(status),
        )


class _PulpBackend:
    """Any pulp solver; the model is rebuilt from arrays each round (pulp has no warm start)."""

    def __init__(self, n: int, T: int, solver: str):
        import pulp

        self.pulp = pulp
        self.name = f"pulp-{solver.lower()}"
        self.n, self.T = n, T
        self.solver_name = solver
        self.rows_coef: list[np.ndarray] = []
        self.rows_step: list[np.ndarray] = []
        self.rows_pair: list[np.ndarray] = []
        self.n_pair_cols = 0

    def add_pair_columns(self, k: int) -> None:
        self.n_pair_cols += k

    def add_rows(self, coef, step_cols, pair_cols) -> None:
        self.rows_coef.append(coef)
        self.rows_step.append(step_cols)
        self.rows_pair.append(pair_cols)

    def _solver(self):
        pulp = self.pulp
        if self.solver_name == "HiGHS":
            return pulp.HiGHS(msg=False)
        return pulp.PULP_CBC_CMD(msg=False, timeLimit=600)

    def solve(self):
        pulp = self.pulp
        n, T = self.n, self.T
        prob = pulp.LpProblem("mixture", pulp.LpMinimize)
        a = [pulp.LpVariable(f"a{i}", 0, 1) for i in range(n)]
        coef = np.concatenate(self.rows_coef) if self.rows_coef else np.zeros((0, n))
        sc = np.concatenate(self.rows_step) if self.rows_step else np.zeros(0, np.int64)
        pc = np.concatenate(self.rows_pair) if self.rows_pair else np.zeros(0, np.int64)
        used_steps = np.unique(sc)
        vt = {int(c): pulp.LpVariable(f"vt{int(c)}", 0) for c in used_steps}
        vp = {int(c): pulp.LpVariable(f"vp{int(c)}", 0) for c in np.unique(pc)}
        prob += pulp.LpAffineExpression([(v, 1.0) for v in (*vt.values(), *vp.values())])
        prob += pulp.LpAffineExpression([(x, 1.0) for x in a]) == 1, "simplex"
        for r in range(len(coef)):
            terms = [(a[i], float(coef[r, i])) for i in range(n) if coef[r, i] != 0.0]
            terms.append((vt[int(sc[r])], 1.0))
            terms.append((vp[int(pc[r])], 1.0))
            prob += pulp.LpConstraint(
                pulp.LpAffineExpression(terms), pulp.LpConstraintGE, f"r{r}", 0.0
            )
        status = prob.solve(self._solver())
        x = np.zeros(n + T + self.n_pair_cols)
        x[:n] = [v.value() or 0.0 for v in a]
        for c, v in vt.items():
            x[c] = v.value() or 0.0
        for c, v in vp.items():
            x[c] = v.value() or 0.0
        return x, float(pulp.value(prob.objective) or 0.0), pulp.LpStatus[status]


def solve_mixture(
    tr: Trajectories,
    *,
    method: str = "auto",
    solver: str = "highs",
    per_step: int = 2,
    per_segment: int = 8,
    max_rows_per_round: int | None = None,
    max_rounds: int = 2000,
    time_limit: float | None = None,
    highs_method: str = "simplex",
    tol: float = 1e-6,
    scale: float = 1e6,
    after: int = 0,
    progress: Callable[[dict], None] | None = None,
) -> LPResult:
    """Solve the mixture LP to optimality by constraint generation.

    ``after=K`` constrains only merges ``K+1..T`` (their counts have merges ``1..K`` applied):
    the attack on the merges an extended vocabulary added to a base tokenizer.

    ``method="auto"`` (default) is ``tree`` with HiGHS (:func:`solve_mixture_tree`), ``rows``
    with a pulp solver. ``method="rows"``: the full LP, violated rows appended each round (per
    round, up to ``per_segment`` violated steps of each violated pair segment, then the
    ``per_step`` most violated pairs of each step, at most ``max_rows_per_round``, default
    50,000). ``method="kelley"``: cutting planes over α with the slack LP solved exactly inside
    (:func:`solve_mixture_kelley`). All reach the same optimum; tree was measured fastest at
    every T we tried (bench/README: 5 languages × 1 MB, T = 2,000: tree 2.4 s, rows 25 s).
    """
    if method == "auto":
        method = "tree" if solver == "highs" else "rows"
    if method == "tree":
        if solver != "highs":
            raise ValueError("method 'tree' uses HiGHS through highspy")
        return solve_mixture_tree(
            tr,
            tol=tol,
            scale=scale,
            progress=progress,
            time_limit=time_limit,
            max_rounds=max_rounds,
            after=after,
            **({} if max_rows_per_round is None else {"max_rows_per_round": max_rows_per_round}),
        )
    if max_rows_per_round is None:
        max_rows_per_round = 50000
    if method == "kelley":
        if solver != "highs":
            raise ValueError("method 'kelley' uses HiGHS through highspy")
        return solve_mixture_kelley(
            tr,
            tol=tol,
            scale=scale,
            per_step=per_step,
            per_segment=per_segment,
            max_rows_per_round=max_rows_per_round,
            progress=progress,
            after=after,
        )
    if method != "rows":
        raise ValueError(f"unknown LP method {method!r} (rows, tree, kelley)")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    lp = MixtureLP(tr, scale=scale, after=after)
    timings["setup"] = time.perf_counter() - t0
    n, T = lp.n, lp.T
    if not np.any(lp.present):
        raise ValueError("no merge of the list occurs in any category sample: nothing to infer")
    if solver == "highs":
        be = _HighsBackend(n, T, method=highs_method)
    elif solver in ("pulp-highs", "pulp-cbc"):
        be = _PulpBackend(n, T, "HiGHS" if solver == "pulp-highs" else "CBC")
    else:
        raise ValueError(f"unknown solver {solver!r}; available: {available_solvers()}")
    pair_col: dict[int, int] = {}
    alpha = np.full(n, 1.0 / n)
    x = np.zeros(n + T)
    v_step = np.zeros(T)
    v_pair_full = np.zeros(len(tr.pairs))
    objective = 0.0
    rows = 0
    history: list[dict] = []
    t_scan = t_build = t_solve = 0.0
    optimal = False
    max_viol = np.inf
    status = ""
    rnd = 0
    P = len(tr.pairs)
    added = np.zeros(0, dtype=np.int64)
    precision_tol = 1e-3  # scaled units: 1e-9 of a category's pairs
    for rnd in range(1, max_rounds + 1):
        ts = time.perf_counter()
        steps, pairs, viol = lp.scan(alpha, v_step, v_pair_full, tol, per_segment)
        t_scan += time.perf_counter() - ts
        max_viol = float(viol.max()) if len(viol) else 0.0
        if len(viol) == 0:
            optimal = True
            break
        # rows already in the model can only look violated through the solver's own precision
        # (pulp reads CBC's solution back as text): never add them twice
        keys = steps * P + pairs
        fresh = ~np.isin(keys, added)
        if not fresh.any():
            optimal = max_viol <= precision_tol
            log.warning(
                "LP: only rows already in the model are violated (max %.3g, solver precision); "
                "stopping",
                max_viol,
            )
            break
        steps, pairs, viol = _select(
            steps[fresh], pairs[fresh], viol[fresh], per_step, max_rows_per_round
        )
        added = np.union1d(added, steps * P + pairs)
        tb = time.perf_counter()
        new_pairs = [int(p) for p in np.unique(pairs) if int(p) not in pair_col]
        base = n + T + len(pair_col)
        for j, p in enumerate(new_pairs):
            pair_col[p] = base + j
        be.add_pair_columns(len(new_pairs))
        coef = lp.row_coefficients(steps, pairs)
        step_cols = n + steps - 1
        pair_cols = np.array([pair_col[int(p)] for p in pairs], dtype=np.int64)
        be.add_rows(coef, step_cols, pair_cols)
        rows += len(steps)
        t_build += time.perf_counter() - tb
        tv = time.perf_counter()
        x, objective, status = be.solve()
        t_solve += time.perf_counter() - tv
        alpha = _simplex_point(x[:n])
        v_step = x[n : n + T]
        if pair_col:
            cols = np.fromiter(pair_col.values(), dtype=np.int64)
            ids = np.fromiter(pair_col.keys(), dtype=np.int64)
            v_pair_full[ids] = x[cols]
        _record_round(
            history, progress, rnd, len(viol), len(steps), rows, objective, max_viol, status, alpha
        )
        if status not in ("Optimal", "Optimal solution found"):
            raise RuntimeError(f"LP solver {be.name} returned status {status!r} in round {rnd}")
        if time_limit is not None and time.perf_counter() - t0 > time_limit:
            log.warning(
                "LP: time limit of %.0f s reached after %d rounds (not optimal)", time_limit, rnd
            )
            break
    timings.update(scan=t_scan, build=t_build, solve=t_solve, total=time.perf_counter() - t0)
    return _result(
        lp,
        alpha,
        objective=objective,
        rounds=rnd,
        rows=rows,
        pair_slacks=len(pair_col),
        optimal=optimal,
        max_violation=max_viol,
        solver=be.name,
        steps_used=int(lp.present.sum()),
        timings=timings,
        history=history,
        step_slack=v_step,
        pair_slack=v_pair_full,
    )


class _CoverLP:
    """The slack problem at fixed α: min Σ v s.t. v_t + v_p ≥ g_r(α) on the rows found so far.

    A bipartite (fractional) vertex cover, dual to a max-weight matching between steps and
    pairs. Rows persist across α (only their right-hand sides change), so HiGHS re-solves from
    the previous basis with the dual simplex.
    """

    def __init__(self, lp: MixtureLP, threads: int | None = None):
        import highspy

        self.lp = lp
        self.hp = highspy
        h = _new_highs()
        h.setOptionValue("solver", "simplex")
        h.setOptionValue("simplex_strategy", 1)  # dual simplex: RHS changes keep dual feasibility
        if threads:
            h.setOptionValue("threads", threads)
        self.inf = highspy.kHighsInf
        _add_cols(h, lp.T, 1.0, 0.0, self.inf)
        self.h = h
        self.pair_col: dict[int, int] = {}
        self.D = np.zeros((0, lp.n))  # g_r(α) = D[r] @ α
        self.row_step = np.zeros(0, np.int64)
        self.row_pair = np.zeros(0, np.int64)

    @property
    def rows(self) -> int:
        return len(self.row_step)

    def add(self, alpha: np.ndarray, steps: np.ndarray, pairs: np.ndarray) -> None:
        new = [int(p) for p in np.unique(pairs) if int(p) not in self.pair_col]
        if new:
            base = self.lp.T + len(self.pair_col)
            for j, p in enumerate(new):
                self.pair_col[p] = base + j
            _add_cols(self.h, len(new), 1.0, 0.0, self.inf)
        D = -self.lp.row_coefficients(steps, pairs)
        k = len(steps)
        pc = np.fromiter((self.pair_col[int(p)] for p in pairs), dtype=np.int64, count=k)
        idx = np.column_stack([steps - 1, pc])
        _add_rows(self.h, D @ alpha, self.inf, idx, np.ones((k, 2)))
        self.D = np.concatenate([self.D, D])
        self.row_step = np.concatenate([self.row_step, steps])
        self.row_pair = np.concatenate([self.row_pair, pairs])

    def set_alpha(self, alpha: np.ndarray) -> None:
        k = self.rows
        if k:
            idx = np.arange(k, dtype=np.int32)
            self.h.changeRowsBounds(k, idx, self.D @ alpha, np.full(k, self.inf))

    def solve(self) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
        self.h.run()
        st = self.h.modelStatusToString(self.h.getModelStatus())
        if st != "Optimal":
            raise RuntimeError(f"slack LP: HiGHS returned status {st!r}")
        sol = self.h.getSolution()
        x = np.asarray(sol.col_value)
        y = np.asarray(sol.row_dual) if self.rows else np.zeros(0)
        v_step = x[: self.lp.T]
        v_pair = np.zeros(len(self.lp.tr.pairs))
        if self.pair_col:
            ids = np.fromiter(self.pair_col.keys(), dtype=np.int64)
            cols = np.fromiter(self.pair_col.values(), dtype=np.int64)
            v_pair[ids] = x[cols]
        return v_step, v_pair, float(self.h.getInfo().objective_function_value), y


def _solve_master(
    cuts: np.ndarray, n: int, prox_center=None, level=None
) -> tuple[np.ndarray, float]:
    """min θ s.t. θ ≥ s_k·α (every cut), α in the simplex, θ ≥ 0 (tiny LP, HiGHS)."""
    import highspy

    h = _new_highs()
    inf = highspy.kHighsInf
    # columns: α_1..α_n, θ
    _add_cols(h, n, 0.0, 0.0, 1.0)
    _add_cols(h, 1, 1.0, 0.0, inf)
    _add_rows(h, 1.0, 1.0, np.arange(n)[None, :], np.ones((1, n)))
    k = len(cuts)
    # θ − s·α ≥ 0
    _add_rows(h, 0.0, inf, np.tile(np.arange(n + 1), (k, 1)), np.column_stack([-cuts, np.ones(k)]))
    h.run()
    x = np.asarray(h.getSolution().col_value)
    return x[:n], float(x[n])


def solve_mixture_kelley(
    tr: Trajectories,
    *,
    tol: float = 1e-6,
    gap_tol: float = 1e-7,
    scale: float = 1e6,
    per_step: int = 2,
    per_segment: int = 8,
    max_rows_per_round: int = 50000,
    max_iterations: int = 300,
    after: int = 0,
    progress: Callable[[dict], None] | None = None,
) -> LPResult:
    """Cutting planes over the n mixture weights (Kelley), exact slack LP inside.

    F(α) = min_v Σv over all (step, pair) constraints is convex and piecewise linear in α; the
    slack problem at fixed α is solved to optimality by constraint generation (the scan), and its
    row duals y give the cut F(α') ≥ Σ_r y_r g_r(α') (valid for every α', tight at α). The master
    over α is an n+1 variable LP. Stops when min_k F(α_k) − (master bound) ≤ gap.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    lp = MixtureLP(tr, scale=scale, after=after)
    timings["setup"] = time.perf_counter() - t0
    if not np.any(lp.present):
        raise ValueError("no merge of the list occurs in any category sample: nothing to infer")
    n = lp.n
    cover = _CoverLP(lp)
    cuts = np.zeros((0, n))
    alpha = np.full(n, 1.0 / n)
    best = (np.inf, alpha, None)
    lower = 0.0
    history: list[dict] = []
    t_scan = t_solve = t_master = 0.0
    inner_rounds = 0
    it = 0
    max_viol = 0.0
    for it in range(1, max_iterations + 1):
        cover.set_alpha(alpha)
        v_step = np.zeros(lp.T)
        v_pair = np.zeros(len(tr.pairs))
        F = 0.0
        y = np.zeros(0)
        while True:
            ts = time.perf_counter()
            steps, pairs, viol = lp.scan(alpha, v_step, v_pair, tol, per_segment)
            t_scan += time.perf_counter() - ts
            if inner_rounds == 0 or len(viol):
                max_viol = float(viol.max()) if len(viol) else 0.0
            if len(viol) == 0 and cover.rows:
                break
            if len(viol):
                steps, pairs, viol = _select(steps, pairs, viol, per_step, max_rows_per_round)
                cover.add(alpha, steps, pairs)
            inner_rounds += 1
            tv = time.perf_counter()
            v_step, v_pair, F, y = cover.solve()
            t_solve += time.perf_counter() - tv
            log.debug("kelley inner %d: +%d rows=%d F=%.6g", inner_rounds, len(viol), cover.rows, F)
            if len(viol) == 0:
                break
        sub = y @ cover.D if len(y) else np.zeros(n)
        if F < best[0]:
            best = (F, alpha.copy(), (v_step.copy(), sub))
        cuts = np.concatenate([cuts, sub[None, :]])
        tm = time.perf_counter()
        alpha_next, lower = _solve_master(cuts, n)
        t_master += time.perf_counter() - tm
        gap = best[0] - lower
        info = {
            "round": it,
            "objective": best[0],
            "F": F,
            "lower_bound": lower,
            "gap": gap,
            "rows": cover.rows,
            "pair_slacks": len(cover.pair_col),
            "inner_rounds": inner_rounds,
            "alpha": alpha.tolist(),
        }
        history.append(info)
        if progress:
            progress(info)
        if gap <= gap_tol * max(1.0, best[0]):
            break
        alpha = _simplex_point(alpha_next)
    timings.update(scan=t_scan, solve=t_solve, master=t_master, total=time.perf_counter() - t0)
    F, alpha, extra = best
    return _result(
        lp,
        alpha,
        objective=F,
        rounds=it,
        rows=cover.rows,
        pair_slacks=len(cover.pair_col),
        optimal=bool(history and history[-1]["gap"] <= gap_tol * max(1.0, F)),
        max_violation=max_viol,
        solver="highs-kelley",
        steps_used=int(lp.present.sum()),
        timings=timings,
        history=history,
        step_slack=extra[0] if extra else None,
    )


class _StepTree:
    """Segment tree over the merge steps present in some sample.

    Every pair segment's range of present steps is cut into its O(log T) canonical nodes; a
    node's value is the minimum of ``M(t) + v_t`` over its steps.
    """

    def __init__(self, lp: MixtureLP):
        pres = np.flatnonzero(lp.present)  # 0-based step indices
        self.pres = pres
        S = len(pres)
        N = 1
        while N < S:
            N *= 2
        self.N, self.S, self.depth = N, S, N.bit_length() - 1
        a = np.searchsorted(pres, lp.seg_lo - 1, "left")
        b = np.searchsorted(pres, lp.seg_hi - 1, "right") - 1
        segs = np.flatnonzero(lp.seg_ok & (a <= b))
        lo, hi = a[segs] + N, b[segs] + N + 1
        nodes, owners = [], []
        idx = segs.copy()
        while len(idx):
            m = (lo & 1) == 1
            nodes.append(lo[m])
            owners.append(idx[m])
            lo = lo + m
            m = (hi & 1) == 1
            hi = hi - m
            nodes.append(hi[m])
            owners.append(idx[m])
            lo >>= 1
            hi >>= 1
            keep = lo < hi
            lo, hi, idx = lo[keep], hi[keep], idx[keep]
        self.e_node = np.concatenate(nodes) if nodes else np.zeros(0, np.int64)
        self.e_seg = np.concatenate(owners) if owners else np.zeros(0, np.int64)
        # nodes that cover at least one present step
        first_leaf = np.zeros(2 * N, np.int64)
        for lev in range(self.depth + 1):
            u = np.arange(1 << lev, 2 << lev)
            first_leaf[u] = (u - (1 << lev)) << (self.depth - lev)
        self.node_used = first_leaf < S

    def node_min(self, U: np.ndarray) -> np.ndarray:
        N = self.N
        tree = np.full(2 * N, np.inf)
        tree[N : N + len(U)] = U
        for lev in range(self.depth - 1, -1, -1):
            a = 1 << lev
            tree[a : 2 * a] = np.minimum(tree[2 * a : 4 * a : 2], tree[2 * a + 1 : 4 * a : 2])
        return tree


def solve_mixture_tree(
    tr: Trajectories,
    *,
    tol: float = 1e-6,
    scale: float = 1e6,
    max_rows_per_round: int = 2000,
    max_rounds: int = 5000,
    time_limit: float | None = None,
    threads: int | None = None,
    after: int = 0,
    progress: Callable[[dict], None] | None = None,
) -> LPResult:
    """The same LP in a compressed form: the rows of one pair segment share a segment tree.

    The constraints "value of segment s − v_p ≤ M(t) + v_t for every step t of s" become, with a
    free variable w per tree node bounded by ``w_leaf(t) ≤ M(t)·α + v_t`` and ``w_parent ≤
    w_child``, one row per canonical node u of s: ``v_p + w_u − C_s·α ≥ 0``. The feasible set in
    (α, v) is unchanged, so the optimum is the LP's; a round whose scan finds no violated
    (node, segment) entry is a proof of optimality (the canonical nodes cover every step of every
    segment exactly), and tests confirm it with the full (step, pair) scan.

    Per round: the most violated entry of each violated segment, then of each pair, then the
    ``max_rows_per_round`` most violated overall (measured on GPT-2 × 8 × 3 MB, T = 30,000: 2,000
    rows per round reach the optimum in ~23 rounds; bench/README). HiGHS runs the parallel dual
    simplex on ``threads`` threads (default: the CPUs of this process, at most 8).
    """
    t0 = time.perf_counter()
    lp = MixtureLP(tr, scale=scale, after=after)
    timings = {"setup": time.perf_counter() - t0}
    if not np.any(lp.present):
        raise ValueError("no merge of the list occurs in any category sample: nothing to infer")
    ct = _StepTree(lp)
    n, T, N, S = lp.n, lp.T, ct.N, ct.S
    P = len(tr.pairs)
    if threads is None:
        threads = _default_threads()
    h = _new_highs()
    h.setOptionValue("solver", "simplex")
    if threads > 1:  # PAMI: HiGHS' parallel dual simplex
        h.setOptionValue("simplex_strategy", 2)
        h.setOptionValue("simplex_max_concurrency", threads)
        h.setOptionValue("threads", threads)
    inf = _highs_inf()
    # columns: α [0, n), v_t of present steps [n, n+S), w of tree nodes [n+S, n+S+2N)
    _add_cols(h, n, 0.0, 0.0, 1.0)
    _add_cols(h, S, 1.0, 0.0, inf)
    _add_cols(h, 2 * N, 0.0, -inf, inf)
    W0 = n + S
    ncol = n + S + 2 * N
    _add_rows(h, 1.0, 1.0, np.arange(n)[None, :], np.ones((1, n)))
    MB = lp.merge_val_base[ct.pres]  # (S, n): M_t(α) = MB[t] @ α
    # leaves: w_leaf − v_t − M_t·α ≤ 0
    leaf = np.arange(S)
    _add_rows(
        h,
        -inf,
        0.0,
        np.column_stack([W0 + N + leaf, n + leaf, np.tile(np.arange(n), (S, 1))]),
        np.column_stack([np.ones(S), -np.ones(S), -MB]),
    )
    # tree: w_parent − w_child ≤ 0
    ch = np.arange(2, 2 * N)
    ch = ch[ct.node_used[ch]]
    _add_rows(
        h,
        -inf,
        0.0,
        np.column_stack([W0 + (ch >> 1), W0 + ch]),
        np.tile([1.0, -1.0], (len(ch), 1)),
    )
    Cseg = lp.segment_coefficients()  # (R, n): value of segment s = Cseg[s] @ α
    pcol = np.full(P, -1, dtype=np.int64)
    added = np.zeros(len(ct.e_node), dtype=bool)
    alpha = np.full(n, 1.0 / n)
    vt = np.zeros(S)
    vp = np.zeros(P)
    history: list[dict] = []
    t_scan = t_solve = t_build = 0.0
    objective = 0.0
    optimal = False
    max_viol = 0.0
    rnd = 0
    timings["tree"] = time.perf_counter() - t0 - timings["setup"]
    for rnd in range(1, max_rounds + 1):
        ts = time.perf_counter()
        nm = ct.node_min(MB @ alpha + vt)
        viol = (Cseg @ alpha - vp[lp.row_pair])[ct.e_seg] - nm[ct.e_node]
        cand = np.flatnonzero(viol > tol)
        max_viol = float(viol[cand].max()) if len(cand) else 0.0
        if len(cand) == 0:
            t_scan += time.perf_counter() - ts
            optimal = True
            break
        fresh = cand[~added[cand]]
        if len(fresh) == 0:
            t_scan += time.perf_counter() - ts
            optimal = max_viol <= 1e-3
            log.warning(
                "LP (tree): only rows already in the model are violated (max %.3g)", max_viol
            )
            break
        pick = _worst_per_group(fresh, ct.e_seg[fresh], viol)
        pick = _worst_per_group(pick, lp.row_pair[ct.e_seg[pick]], viol)
        if len(pick) > max_rows_per_round:
            pick = pick[np.argsort(-viol[pick], kind="stable")[:max_rows_per_round]]
        t_scan += time.perf_counter() - ts
        tb = time.perf_counter()
        added[pick] = True
        segs, nodes = ct.e_seg[pick], ct.e_node[pick]
        prs = lp.row_pair[segs]
        newp = np.unique(prs[pcol[prs] < 0])
        if len(newp):
            pcol[newp] = ncol + np.arange(len(newp))
            ncol += len(newp)
            _add_cols(h, len(newp), 1.0, 0.0, inf)
        k = len(pick)
        _add_rows(
            h,
            0.0,
            inf,
            np.column_stack([pcol[prs], W0 + nodes, np.tile(np.arange(n), (k, 1))]),
            np.column_stack([np.ones((k, 2)), -Cseg[segs]]),
        )
        t_build += time.perf_counter() - tb
        tv = time.perf_counter()
        h.run()
        t_solve += time.perf_counter() - tv
        status = h.modelStatusToString(h.getModelStatus())
        if status != "Optimal":
            raise RuntimeError(f"LP (tree): HiGHS returned status {status!r} in round {rnd}")
        x = np.asarray(h.getSolution().col_value)
        alpha = _simplex_point(x[:n])
        vt = x[n : n + S]
        vp = np.zeros(P)
        has = pcol >= 0
        vp[has] = x[pcol[has]]
        objective = float(h.getInfo().objective_function_value)
        _record_round(
            history,
            progress,
            rnd,
            len(cand),
            k,
            int(added.sum()),
            objective,
            max_viol,
            status,
            alpha,
        )
        if time_limit is not None and time.perf_counter() - t0 > time_limit:
            log.warning("LP (tree): time limit of %.0f s reached after %d rounds", time_limit, rnd)
            break
    timings.update(scan=t_scan, build=t_build, solve=t_solve, total=time.perf_counter() - t0)
    v_step = np.zeros(T)
    v_step[ct.pres] = vt
    return _result(
        lp,
        alpha,
        objective=objective,
        rounds=rnd,
        rows=int(added.sum()),
        pair_slacks=int((pcol >= 0).sum()),
        optimal=optimal,
        max_violation=max_viol,
        solver="highs-tree",
        steps_used=S,
        timings=timings,
        history=history,
        step_slack=v_step,
        pair_slack=vp,
    )


def _worst_per_group(idx: np.ndarray, group: np.ndarray, viol: np.ndarray) -> np.ndarray:
    """Of the entries ``idx`` (with group labels ``group``), the most violated of each group."""
    o = np.lexsort((-viol[idx], group))
    g = group[o]
    first = np.ones(len(o), dtype=bool)
    first[1:] = g[1:] != g[:-1]
    return idx[o[first]]


def _record_round(
    history, progress, rnd, violated, added, rows, objective, max_viol, status, alpha
) -> None:
    info = {
        "round": rnd,
        "violated": int(violated),
        "added": int(added),
        "rows": int(rows),
        "objective": objective,
        "max_violation": max_viol,
        "status": status,
        "alpha": alpha.tolist(),
    }
    history.append(info)
    if progress:
        progress(info)


def _result(lp: MixtureLP, alpha: np.ndarray, **kw) -> LPResult:
    return LPResult(
        alpha_pairs=alpha,
        alpha_bytes=_byte_units(alpha, lp.tr),
        violated_share=lp.violated_share(alpha),
        after=lp.after,
        **kw,
    )


def _add_cols(h, k: int, cost: float, lower: float, upper: float) -> None:
    """Append ``k`` columns with equal cost and bounds to a live HiGHS model."""
    if k:
        e = np.array([], np.int32)
        h.addCols(k, np.full(k, cost), np.full(k, lower), np.full(k, upper), 0, e, e, np.array([]))


def _add_rows(h, lower, upper, idx: np.ndarray, val: np.ndarray) -> None:
    """Append rows of equal width: ``idx``/``val`` are (k, m) column indices and coefficients;
    ``lower``/``upper`` scalars or (k,) arrays."""
    k, m = idx.shape
    if k:
        lo = np.broadcast_to(np.asarray(lower, dtype=np.float64), (k,)).copy()
        hi = np.broadcast_to(np.asarray(upper, dtype=np.float64), (k,)).copy()
        h.addRows(
            k,
            lo,
            hi,
            k * m,
            (np.arange(k) * m).astype(np.int32),
            np.ascontiguousarray(idx, dtype=np.int32).ravel(),
            np.ascontiguousarray(val, dtype=np.float64).ravel(),
        )


def _default_threads() -> int:
    """HiGHS threads: ``OMP_NUM_THREADS`` when set (Ray sets it to a task's CPUs: two 1-CPU
    trials each running a 2-thread parallel simplex on 2 cores spin and crawl), else the CPUs
    this process may use, at most 8."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    return max(1, min(8, n))


def _simplex_point(x: np.ndarray) -> np.ndarray:
    """A solver's α, clipped at 0 and renormalised (solver tolerances leave ±1e-9 noise)."""
    a = np.clip(x, 0, None)
    return a / a.sum() if a.sum() > 0 else np.full(len(a), 1.0 / len(a))


def _byte_units(alpha: np.ndarray, tr: Trajectories) -> np.ndarray:
    """Pair-unit weights to byte proportions: α_bytes,i ∝ α_i · bytes_i / P_i."""
    ab = alpha * tr.n_bytes / tr.total_pairs
    return ab / ab.sum() if ab.sum() > 0 else ab


def _highs_inf() -> float:
    import highspy

    return highspy.kHighsInf


def _enumerate_violations(rmq: _SparseMin, lo, hi, val, limit_per_seg: int, tol: float):
    """All (or up to ``limit_per_seg`` per segment) steps t in [lo, hi] with val > M(t) + tol.

    Vectorised bisection: query the range minimum; if violated, emit it and split the range
    around it. Returns (segment index, step index 0-based, violation)."""
    seg = np.arange(len(lo))
    out_s, out_t, out_v = [], [], []
    count = np.zeros(len(lo), dtype=np.int64)
    while len(seg):
        m, arg = rmq.query(lo, hi)
        v = val[seg] - m
        ok = (v > tol) & (count[seg] < limit_per_seg)
        seg, lo, hi, arg, v = seg[ok], lo[ok], hi[ok], arg[ok], v[ok]
        out_s.append(seg)
        out_t.append(arg)
        out_v.append(v)
        np.add.at(count, seg, 1)
        left = arg - 1 >= lo
        right = arg + 1 <= hi
        seg = np.concatenate([seg[left], seg[right]])
        lo, hi = (
            np.concatenate([lo[left], arg[right] + 1]),
            np.concatenate([arg[left] - 1, hi[right]]),
        )
    if not out_s:
        z = np.zeros(0, np.int64)
        return z, z, np.zeros(0)
    return np.concatenate(out_s), np.concatenate(out_t), np.concatenate(out_v)
