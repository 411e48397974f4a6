"""RPC's reasoning pruning ("Bridging Internal Probability and Self-Consistency"): a
two-component Weibull mixture fitted to the path probabilities, and the paths it keeps."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ponder.strategies.numerics import Floats

__all__ = [
    "WeibullMixture",
    "fit_weibull_mixture",
    "rpc_prune",
]


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
