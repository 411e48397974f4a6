"""DeepConf's confidences: per token, per sliding group of tokens, per trace, and the
filter that keeps the most confident traces."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ponder.strategies.numerics import Floats

__all__ = [
    "TRACE_CONFIDENCES",
    "confidence_filter",
    "group_confidences",
    "lowest_full_group",
    "token_confidences",
    "trace_confidence",
]


def token_confidences(
    top_logprobs: Sequence[Sequence[float]], sampled: Sequence[float] | None = None
) -> np.ndarray:
    """DeepConf token confidence (Fu et al. 2025): ``C_i = -mean_j log P_i(j)`` over the
    log-probabilities reported at position ``i``: the top-k alternatives and, when
    ``sampled[i]`` (the sampled token's log-probability) is below all of them, the sampled
    token too (it is outside the top-k; vLLM, which the authors use, then reports k + 1
    entries). High when the distribution is peaked."""
    if sampled is not None and len(sampled) != len(top_logprobs):
        raise ValueError(
            f"{len(sampled)} sampled log-probabilities for {len(top_logprobs)} positions"
        )
    out = np.empty(len(top_logprobs), dtype=float)
    for i, alts in enumerate(top_logprobs):
        if len(alts) == 0:
            raise ValueError(f"position {i} has no top log-probabilities")
        values = list(alts)
        if sampled is not None and sampled[i] < min(values):
            values.append(sampled[i])
        out[i] = -float(np.mean(values))
    return out


def group_confidences(conf: Floats, window: int) -> np.ndarray:
    """Sliding-window means of token confidences, one per full window of ``window`` tokens;
    a trace shorter than ``window`` is one group (its mean); an empty trace has none."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    c = np.asarray(conf, dtype=float)
    if c.size == 0:
        return c
    if c.size < window:
        return np.asarray([c.mean()])
    csum = np.concatenate([[0.0], np.cumsum(c)])
    return (csum[window:] - csum[:-window]) / window


def lowest_full_group(conf: Floats, window: int) -> float | None:
    """The lowest mean of ``window`` consecutive token confidences, or ``None`` while the
    trace has fewer than ``window`` tokens. DeepConf's online stop tests only full windows:
    the mean of a short prefix is noisier than the whole-trace groups the threshold was
    calibrated on, and the minimum over many noisy prefix means is biased low."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    c = np.asarray(conf, dtype=float)
    if c.size < window:
        return None
    return float(group_confidences(c, window).min())


TRACE_CONFIDENCES = ("lowest", "bottom10", "tail", "mean")


def trace_confidence(conf: Floats, window: int, kind: str = "lowest") -> float:
    """One confidence per trace (DeepConf): ``"lowest"`` group confidence, ``"bottom10"``
    (mean of the lowest 10% of group confidences, at least one), ``"tail"`` (mean of the
    last ``window`` tokens) or ``"mean"`` (all tokens). An empty trace scores 0."""
    c = np.asarray(conf, dtype=float)
    if kind not in TRACE_CONFIDENCES:
        raise ValueError(f"trace confidence must be one of {TRACE_CONFIDENCES}, got {kind!r}")
    if c.size == 0:
        return 0.0
    if kind == "mean":
        return float(c.mean())
    if kind == "tail":
        return float(c[-window:].mean())
    groups = group_confidences(c, window)
    if kind == "lowest":
        return float(groups.min())
    m = max(1, int(math.ceil(0.1 * groups.size)))
    return float(np.sort(groups)[:m].mean())


def confidence_filter(
    confidences: Sequence[float], keep_percent: float
) -> tuple[list[bool], float]:
    """DeepConf's filter: keep the traces whose confidence is at least the
    ``(100 - keep_percent)``-th percentile (linear interpolation) of ``confidences``.
    Returns the mask and the threshold."""
    if not 0 < keep_percent <= 100:
        raise ValueError(f"keep_percent must be in (0, 100], got {keep_percent}")
    c = np.asarray(confidences, dtype=float)
    if c.size == 0:
        return [], math.inf
    cut = float(np.percentile(c, 100 - keep_percent))
    return [bool(v >= cut) for v in c], cut
