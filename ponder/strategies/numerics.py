"""Pure numerics behind the voting, selection and adaptive strategies.

Everything here is a function of plain numbers (no engine, no I/O); randomness comes from an
explicit ``numpy.random.Generator``. Clusters are ``{answer key: [candidate indices]}`` as
built by ``ponder.scoring.answers.cluster_answers``; their order (first seen) breaks ties.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Floats = Sequence[float] | npt.NDArray[np.float64]
"""Numbers as a sequence or an array."""

__all__ = [
    "WeibullMixture",
    "beta_leader_probability",
    "cluster_log_sums",
    "cluster_sums",
    "confidence_filter",
    "dirichlet_leader_probability",
    "distinct_path_sums",
    "fit_weibull_mixture",
    "group_confidences",
    "leader",
    "log_path_weight",
    "lowest_full_group",
    "normalized_shares",
    "rpc_prune",
    "token_confidences",
    "trace_confidence",
    "unanimous_window",
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


@dataclass(frozen=True)
class WeibullMixture:
    """Two Weibull components, ``high`` (the larger mean) and ``low``:
    ``w * Weibull(k_high, lam_high) + (1 - w) * Weibull(k_low, lam_low)``."""

    weight_high: float
    k_high: float
    lam_high: float
    k_low: float
    lam_low: float

    def log_components(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Weighted log densities of each component at ``x`` (``-inf`` where one is zero)."""
        hi = np.log(self.weight_high) + _weibull_logpdf(x, self.k_high, self.lam_high)
        lo = np.log1p(-self.weight_high) + _weibull_logpdf(x, self.k_low, self.lam_low)
        return hi, lo

    def high_membership(self, x: Floats) -> np.ndarray:
        """Posterior probability that each value comes from the high component."""
        hi, lo = self.log_components(np.asarray(x, dtype=float))
        both = np.logaddexp(hi, lo)
        with np.errstate(invalid="ignore"):
            post = np.exp(hi - both)
        return np.where(np.isneginf(both), 0.5, post)

    def as_dict(self) -> dict[str, float]:
        return {
            "weight_high": self.weight_high,
            "k_high": self.k_high,
            "lam_high": self.lam_high,
            "k_low": self.k_low,
            "lam_low": self.lam_low,
        }


_K_RANGE = (1e-2, 1e3)
_W_RANGE = (0.2, 0.8)  # the RPC authors bound the mixing weight to [0.2, 0.8] as well


def _weibull_logpdf(x: np.ndarray, k: float, lam: float) -> np.ndarray:
    z = np.log(x) - np.log(lam)
    with np.errstate(over="ignore"):
        return np.log(k) - np.log(lam) + (k - 1) * z - np.exp(k * z)


def _weibull_weighted_mle(x: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood ``(k, lam)`` of a Weibull with per-point weights ``w``.

    ``lam^k = sum w x^k / sum w`` in closed form; ``k`` is the root of the profile score
    ``sum w x^k ln x / sum w x^k - 1/k - sum w ln x / sum w``, which increases in ``k``, so
    bisection on ``log k`` finds it (clamped to a wide range when the data are all equal).
    """
    lx = np.log(x)
    wsum = w.sum()
    mean_lx = float((w * lx).sum() / wsum)

    def score(k: float) -> float:
        a = k * (lx - lx.max())  # shifted for stability; the ratio is unchanged
        e = w * np.exp(a)
        return float((e * lx).sum() / e.sum() - 1.0 / k - mean_lx)

    lo, hi = math.log(_K_RANGE[0]), math.log(_K_RANGE[1])
    if score(math.exp(hi)) <= 0:
        k = math.exp(hi)
    elif score(math.exp(lo)) >= 0:
        k = math.exp(lo)
    else:
        for _ in range(80):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if score(math.exp(mid)) < 0 else (lo, mid)
        k = math.exp((lo + hi) / 2)
    top = lx.max()
    lam = math.exp(top + math.log(float((w * np.exp(k * (lx - top))).sum() / wsum)) / k)
    return k, lam


def fit_weibull_mixture(values: Floats, iterations: int = 200) -> WeibullMixture | None:
    """Fit a two-component Weibull mixture to positive ``values`` by maximum likelihood (EM).

    Start: the values above the median form the high component. Each EM step computes the
    posterior memberships, then the weighted Weibull MLE of each component; the mixing
    weight stays in [0.2, 0.8]. Returns ``None`` when fewer than 4 values or fewer than 2
    distinct values make a two-component fit meaningless.
    """
    x = np.maximum(np.asarray(values, dtype=float), 1e-300)
    if x.size < 4 or np.unique(x).size < 2:
        return None
    resp = (x > np.median(x)).astype(float)
    if resp.sum() in (0, x.size):
        resp = (x >= np.median(x)).astype(float)
    resp = np.clip(resp, 1e-6, 1 - 1e-6)
    prev = -math.inf
    mix = None
    for _ in range(iterations):
        w_hi = float(np.clip(resp.mean(), *_W_RANGE))
        k_hi, lam_hi = _weibull_weighted_mle(x, resp)
        k_lo, lam_lo = _weibull_weighted_mle(x, 1 - resp)
        mix = WeibullMixture(w_hi, k_hi, lam_hi, k_lo, lam_lo)
        hi, lo = mix.log_components(x)
        both = np.logaddexp(hi, lo)
        ll = float(both.sum())
        with np.errstate(invalid="ignore"):
            resp = np.clip(np.where(np.isneginf(both), 0.5, np.exp(hi - both)), 1e-9, 1 - 1e-9)
        if abs(ll - prev) < 1e-9 * max(1.0, abs(ll)):
            break
        prev = ll
    assert mix is not None
    if _weibull_mean(mix.k_high, mix.lam_high) < _weibull_mean(mix.k_low, mix.lam_low):
        mix = WeibullMixture(1 - mix.weight_high, mix.k_low, mix.lam_low, mix.k_high, mix.lam_high)
    return mix


def _weibull_mean(k: float, lam: float) -> float:
    return lam * math.gamma(1 + 1 / k)


def rpc_prune(
    probabilities: Floats, method: str = "weibull", quantile: float = 0.25
) -> tuple[list[bool], WeibullMixture | None]:
    """Reasoning pruning (Zhou et al. 2025): which paths to keep, by path probability.

    ``"weibull"`` (the paper's rule): fit a two-component Weibull mixture to the
    probabilities; drop a path when the low component explains it better than the high one
    *and* its probability is below the mean. ``"quantile"``: drop paths whose probability
    is below the ``quantile``-th quantile. ``"none"``: keep everything. A path whose
    probability is 0 (an empty path: no tokens, no evidence) is always dropped and takes no
    part in the fit, the mean or the quantile, so it cannot pull the low component towards
    0. A mixture that cannot be fitted (too few or identical values) keeps every other path.
    """
    p = np.asarray(probabilities, dtype=float)
    if method not in ("weibull", "quantile", "none"):
        raise ValueError(f"unknown pruning method {method!r}; use weibull, quantile or none")
    if method == "none" or p.size == 0:
        return [True] * int(p.size), None
    usable = np.isfinite(p) & (p > 0)
    keep = [False] * int(p.size)
    if not usable.any():
        return keep, None
    q = p[usable]
    mix = None
    if method == "quantile":
        cut = float(np.quantile(q, quantile))
        kept = [bool(v >= cut) for v in q]
    else:
        mix = fit_weibull_mixture(q)
        if mix is None:
            kept = [True] * int(q.size)
        else:
            high = mix.high_membership(q)
            mean = float(q.mean())
            kept = [not (h < 0.5 and v < mean) for h, v in zip(high, q, strict=True)]
    for i, k in zip(np.flatnonzero(usable), kept, strict=True):
        keep[int(i)] = k
    return keep, mix


# ---- stopping rules for early-stopping self-consistency ---------------------------------


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


# ---- DeepConf confidences -----------------------------------------------------------------


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
