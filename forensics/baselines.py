"""Baselines for mixture inference (Hayase et al. 2024, §5): pure, arrays in, arrays out.

* **Random**: a uniform draw from the simplex.
* **TEE** (tokenizer encoding efficiency): a category the tokenizer was trained on a lot of is
  encoded almost as compactly as by a tokenizer trained on that category alone. Category ``i``'s
  efficiency is ``e_i = bytes/token(mixture tokenizer) / bytes/token(category-only tokenizer)``
  on the same text; the estimate is ``e`` normalised to sum to 1.
* **TC** (token classification): each learned vocabulary token goes to the category in whose
  sample it is most frequent (per token of that sample); the estimate is each category's share
  of the classified tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .counting import CategoryCounts

__all__ = ["random_guess", "tc_estimate", "tee_estimate"]


def random_guess(n: int, rng: np.random.Generator) -> np.ndarray:
    """A uniform draw from the (n−1)-simplex."""
    return rng.dirichlet(np.ones(n))


def tee_estimate(bpt_mixture: Sequence[float], bpt_single: Sequence[float]) -> np.ndarray:
    """Normalised encoding efficiencies (bytes per token under the mixture tokenizer over bytes
    per token under each category's own tokenizer)."""
    mix = np.asarray(bpt_mixture, dtype=np.float64)
    single = np.asarray(bpt_single, dtype=np.float64)
    if mix.shape != single.shape or np.any(single <= 0) or np.any(mix < 0):
        raise ValueError("bytes per token must be positive and given for every category")
    e = mix / single
    return e / e.sum() if e.sum() > 0 else np.full(len(e), 1.0 / len(e))


def tc_estimate(counts: Sequence[CategoryCounts], first_learned_id: int) -> np.ndarray:
    """Share of the learned tokens (ids ≥ ``first_learned_id``) that are most frequent, per
    token of the sample, in each category. Tokens seen in no sample are not classified."""
    n = len(counts)
    if n == 0:
        raise ValueError("no categories")
    V = counts[0].vocab_size
    freq = np.zeros((n, V))
    for i, c in enumerate(counts):
        total = c.uni_counts.sum()
        if total > 0:
            freq[i, c.uni_ids] = c.uni_counts / total
    freq = freq[:, first_learned_id:]
    seen = freq.max(axis=0) > 0
    if not seen.any():
        return np.full(n, 1.0 / n)
    winner = freq[:, seen].argmax(axis=0)
    share = np.bincount(winner, minlength=n).astype(np.float64)
    return share / share.sum()
