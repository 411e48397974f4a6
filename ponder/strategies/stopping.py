"""Stopping rules of early-stopping self-consistency: is the vote settled yet?"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "beta_leader_probability",
    "dirichlet_leader_probability",
    "unanimous_window",
]


def unanimous_window(window_keys: Sequence[str | None], lead: str | None) -> bool:
    """ESC's rule (Li et al. 2024): every answer in the last window equals the leader."""
    return lead is not None and len(window_keys) > 0 and all(k == lead for k in window_keys)


def beta_leader_probability(counts: Sequence[int]) -> float:
    """Adaptive-Consistency's Beta test (Aggarwal et al. 2023): with ``v1 >= v2`` the two
    largest vote counts (``v2 = 0`` when one answer was seen), the posterior probability
    ``P(p > 1/2)`` for ``p ~ Beta(v1 + 1, v2 + 1)``, i.e. that the leader beats the runner-up.

    Exact for integer counts: ``P(p > 1/2) = P(Binomial(v1 + v2 + 1, 1/2) <= v1)``.
    """
    top = [*sorted((int(c) for c in counts), reverse=True), 0, 0]
    v1, v2 = top[0], top[1]
    n = v1 + v2 + 1
    return sum(math.comb(n, j) for j in range(v1 + 1)) / 2**n


def dirichlet_leader_probability(
    counts: Sequence[int], rng: np.random.Generator, draws: int = 20000
) -> float:
    """Monte-Carlo estimate of ``P(the leading answer has the largest probability)`` under
    the posterior ``Dirichlet(v_1 + 1, ..., v_m + 1, 1)``: the observed answers plus one
    category for every answer not seen yet (so a single observed answer is not certain)."""
    if not counts:
        return 0.0
    alpha = np.asarray([*counts, 0], dtype=float) + 1.0
    lead = int(np.argmax(alpha[:-1]))
    sample = rng.dirichlet(alpha, size=draws)
    return float((sample.argmax(axis=1) == lead).mean())
