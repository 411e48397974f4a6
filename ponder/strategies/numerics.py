"""Vote arithmetic behind the voting and selection strategies.

Everything here is a function of plain numbers (no engine, no I/O); randomness comes from an
explicit ``numpy.random.Generator``. Clusters are ``{answer key: [candidate indices]}`` as
built by ``ponder.scoring.answers.cluster_answers``; their order (first seen) breaks ties.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

Floats = Sequence[float] | npt.NDArray[np.float64]
"""Numbers as a sequence or an array."""

__all__ = [
    "cluster_log_sums",
    "cluster_sums",
    "distinct_path_sums",
    "leader",
    "log_path_weight",
    "normalized_shares",
]


# ---- weighted votes ----------------------------------------------------------------------


def cluster_sums(
    clusters: Mapping[str, Sequence[int]], weights: Sequence[float]
) -> dict[str, float]:
    """``{key: sum of weights[i] over the cluster's members}``."""
    return {k: float(sum(weights[i] for i in ix)) for k, ix in clusters.items()}


def cluster_log_sums(
    clusters: Mapping[str, Sequence[int]], log_weights: Sequence[float]
) -> dict[str, float]:
    """``{key: log sum_i exp(log_weights[i])}`` over each cluster, computed without underflow
    (path probabilities ``exp(sum logprob)`` of long texts are far below the float range)."""
    out = {}
    for k, ix in clusters.items():
        lw = np.asarray([log_weights[i] for i in ix], dtype=float)
        top = float(lw.max())
        out[k] = top if math.isinf(top) else top + float(np.log(np.exp(lw - top).sum()))
    return out


def normalized_shares(log_totals: Mapping[str, float]) -> dict[str, float]:
    """Softmax of log totals: each cluster's share of the total weight (sums to 1)."""
    if not log_totals:
        return {}
    keys = list(log_totals)
    lw = np.asarray([log_totals[k] for k in keys], dtype=float)
    if np.isneginf(lw.max()):
        return {k: 1.0 / len(keys) for k in keys}
    w = np.exp(lw - lw.max())
    return {k: float(v) for k, v in zip(keys, w / w.sum(), strict=True)}


def leader(
    totals: Mapping[str, float], clusters: Mapping[str, Sequence[int]] | None = None
) -> str | None:
    """The key with the largest total; ties go to the larger cluster (when ``clusters`` is
    given), then to the key seen first. ``None`` when there are no keys."""
    if not totals:
        return None
    order = {k: i for i, k in enumerate(totals)}

    def rank(k: str) -> tuple[float, int, int]:
        size = len(clusters[k]) if clusters is not None else 0
        return (-totals[k], -size, order[k])

    return min(totals, key=rank)


def log_path_weight(token_logprobs: Sequence[float], length_normalize: bool) -> float | None:
    """Log of a path's probability weight: ``sum(logprob)`` (the path probability) or, with
    ``length_normalize``, ``mean(logprob)`` (the geometric-mean token probability, which does
    not punish long paths). ``None`` for an empty path: it carries no evidence."""
    if len(token_logprobs) == 0:
        return None
    lp = np.asarray(token_logprobs, dtype=float)
    return float(lp.mean() if length_normalize else lp.sum())


# ---- RPC: perplexity consistency and reasoning pruning ----------------------------------


def distinct_path_sums(
    clusters: Mapping[str, Sequence[int]],
    texts: Sequence[str],
    probabilities: Sequence[float],
    keep: Sequence[bool] | None = None,
) -> dict[str, float]:
    """Perplexity consistency (Zhou et al. 2025): ``score(y) = sum over the distinct texts t
    with answer y of p(t)``. A text sampled twice counts once, so the score estimates the
    probability mass the model puts on answer ``y`` rather than re-counting a path; pruned
    paths (``keep[i]`` false) add nothing."""
    out = {}
    for k, ix in clusters.items():
        seen: dict[str, float] = {}
        for i in ix:
            if keep is None or keep[i]:
                seen.setdefault(texts[i], float(probabilities[i]))
        out[k] = float(sum(seen.values()))
    return out
