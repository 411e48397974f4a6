"""RPC's reasoning pruning ("Bridging Internal Probability and Self-Consistency"): a
two-component Weibull mixture fitted to the path probabilities, and the paths it keeps."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np

from ponder.strategies.numerics import Floats

__all__ = [
    "WeibullMixture",
    "fit_weibull_mixture",
    "fit_weibull_mixtures",
    "fitted_values",
    "prefitted",
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
_K_TOL = 1e-12  # Newton stops when a step moves log k by less than this
_K_STEPS = 200  # safeguard; every step at least halves the bracket when Newton leaves it


def _weibull_logpdf(x: np.ndarray, k: np.ndarray | float, lam: np.ndarray | float) -> np.ndarray:
    z = np.log(x) - np.log(lam)
    with np.errstate(over="ignore"):
        return np.log(k) - np.log(lam) + (k - 1) * z - np.exp(k * z)


def _weibull_weighted_mle(
    lx: np.ndarray, w: np.ndarray, start: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood ``(k, lam)`` of a Weibull for each row of ``lx`` (log values)
    with per-point weights ``w``, both shaped (rows, n).

    ``lam^k = sum w x^k / sum w`` in closed form; ``k`` is the root of the profile score
    ``g(k) = sum w x^k (ln x - m) / sum w x^k - 1/k`` (``m`` the weighted mean of ``ln x``),
    which increases in ``k``. Safeguarded Newton on ``log k`` from ``start`` (else the
    moment estimate ``pi / (sqrt 6 sd(ln x))``), inside a sign bracket that starts at
    ``_K_RANGE`` (``k`` is clamped to its ends when the root lies outside) and falls back to
    bisection when a step leaves it; a row stops when its step is below ``_K_TOL``.
    """
    wsum = w.sum(axis=1)
    m = (w * lx).sum(axis=1) / wsum
    c = lx - m[:, None]
    d = lx - lx.max(axis=1, keepdims=True)  # x^k scaled by max(x)^-k: ratios unchanged

    def score(t: np.ndarray, rows: np.ndarray | slice) -> tuple[np.ndarray, np.ndarray]:
        k = np.exp(t)
        e = w[rows] * np.exp(k[:, None] * d[rows])
        s0 = e.sum(axis=1)
        mean_c = (e * c[rows]).sum(axis=1) / s0
        var = (e * (c[rows] - mean_c[:, None]) ** 2).sum(axis=1) / s0
        return mean_c - 1.0 / k, k * var + 1.0 / k  # g and dg / dlog k

    rows = d.shape[0]
    lo = np.full(rows, math.log(_K_RANGE[0]))
    hi = np.full(rows, math.log(_K_RANGE[1]))
    g_hi, g_lo = score(hi, slice(None))[0], score(lo, slice(None))[0]
    t = np.where(g_hi <= 0, hi, lo)
    active = np.flatnonzero((g_hi > 0) & (g_lo < 0))
    if start is None:
        sd = np.sqrt((w * c**2).sum(axis=1) / wsum)
        with np.errstate(divide="ignore"):
            guess = np.log(math.pi / math.sqrt(6.0) / sd)
    else:
        guess = np.log(start)
    cur = np.clip(guess, lo, hi)
    for _ in range(_K_STEPS):
        if active.size == 0:
            break
        ta = cur[active]
        g, dg = score(ta, active)
        lo[active] = np.where(g < 0, ta, lo[active])
        hi[active] = np.where(g > 0, ta, hi[active])
        step = np.where(g == 0, 0.0, -g / dg)
        nxt = ta + step
        done = np.abs(step) < _K_TOL
        outside = ~((nxt > lo[active]) & (nxt < hi[active]) | done)
        cur[active] = np.where(outside, (lo[active] + hi[active]) / 2, nxt)
        t[active] = cur[active]
        active = active[~done]
    k = np.exp(t)
    lam = np.exp(lx.max(axis=1) + np.log((w * np.exp(k[:, None] * d)).sum(axis=1) / wsum) / k)
    return k, lam


def fit_weibull_mixture(values: Floats, iterations: int = 200) -> WeibullMixture | None:
    """Fit a two-component Weibull mixture to positive ``values`` by maximum likelihood (EM):
    ``fit_weibull_mixtures`` on one row, so a fit alone equals the same fit in a batch."""
    return fit_weibull_mixtures([values], iterations)[0]


def fit_weibull_mixtures(
    rows: Sequence[Floats], iterations: int = 200
) -> list[WeibullMixture | None]:
    """``fit_weibull_mixture`` of each row, computed together: rows of equal length share
    every array operation, and each row's arithmetic is its own (its result does not depend
    on the other rows).

    Start: the values above the median form the high component. Each EM step computes the
    weighted Weibull MLE of each component (``_weibull_weighted_mle``, warm-started from the
    previous step's shapes), then the posterior memberships; the mixing weight stays in
    [0.2, 0.8]; a row stops when its log-likelihood changes by less than 1e-9 (relative).
    ``None`` for a row with fewer than 4 values or fewer than 2 distinct values, where a
    two-component fit is meaningless.
    """
    out: list[WeibullMixture | None] = [None] * len(rows)
    by_size: dict[int, list[int]] = {}
    arrays = [np.maximum(np.asarray(r, dtype=float).ravel(), 1e-300) for r in rows]
    for i, x in enumerate(arrays):
        if x.size >= 4 and np.unique(x).size >= 2:
            by_size.setdefault(x.size, []).append(i)
    for idx in by_size.values():
        fits = _fit_rows(np.stack([arrays[i] for i in idx]), iterations)
        for i, mix in zip(idx, fits, strict=True):
            out[i] = mix
    return out


def _fit_rows(x: np.ndarray, iterations: int) -> list[WeibullMixture]:
    """EM for each row of ``x`` (rows, n), as ``fit_weibull_mixtures`` describes."""
    rows = x.shape[0]
    lx = np.log(x)
    med = np.median(x, axis=1, keepdims=True)
    resp = (x > med).astype(float)
    flat = np.isin(resp.sum(axis=1), (0, x.shape[1]))
    resp[flat] = (x[flat] >= med[flat]).astype(float)
    resp = np.clip(resp, 1e-6, 1 - 1e-6)
    prev = np.full(rows, -math.inf)
    params = np.zeros((rows, 5))  # weight_high, k_high, lam_high, k_low, lam_low
    active = np.arange(rows)
    shapes: np.ndarray | None = None
    for _ in range(iterations):
        r, xa, la = resp[active], x[active], lx[active]
        w_hi = np.clip(r.mean(axis=1), *_W_RANGE)
        k, lam = _weibull_weighted_mle(np.vstack([la, la]), np.vstack([r, 1 - r]), shapes)
        n = active.size
        params[active] = np.column_stack([w_hi, k[:n], lam[:n], k[n:], lam[n:]])
        hi = np.log(w_hi)[:, None] + _weibull_logpdf(xa, k[:n, None], lam[:n, None])
        lo = np.log1p(-w_hi)[:, None] + _weibull_logpdf(xa, k[n:, None], lam[n:, None])
        both = np.logaddexp(hi, lo)
        ll = both.sum(axis=1)
        with np.errstate(invalid="ignore"):
            post = np.where(np.isneginf(both), 0.5, np.exp(hi - both))
        resp[active] = np.clip(post, 1e-9, 1 - 1e-9)
        going = ~(np.abs(ll - prev[active]) < 1e-9 * np.maximum(1.0, np.abs(ll)))
        prev[active] = ll
        active = active[going]
        shapes = np.concatenate([k[:n][going], k[n:][going]])
        if active.size == 0:
            break
    out = []
    for w, k_hi, lam_hi, k_lo, lam_lo in params.tolist():
        mix = WeibullMixture(w, k_hi, lam_hi, k_lo, lam_lo)
        if _weibull_mean(k_hi, lam_hi) < _weibull_mean(k_lo, lam_lo):
            mix = WeibullMixture(1 - w, k_lo, lam_lo, k_hi, lam_hi)
        out.append(mix)
    return out


def _weibull_mean(k: float, lam: float) -> float:
    return lam * math.gamma(1 + 1 / k)


_PREFIT: ContextVar[dict[bytes, WeibullMixture | None] | None] = ContextVar(
    "rpc_prefit", default=None
)


def fitted_values(probabilities: Floats) -> np.ndarray:
    """The probabilities the Weibull fit sees: the finite, positive ones, in order."""
    p = np.asarray(probabilities, dtype=float)
    return p[np.isfinite(p) & (p > 0)]


@contextmanager
def prefitted(probability_lists: Iterable[Floats]) -> Iterator[None]:
    """Within the block, ``rpc_prune`` takes the mixture of each of these probability lists
    from one batched ``fit_weibull_mixtures`` of them all (the same mixture a fit alone
    gives, bit for bit) instead of fitting it again; other lists are fitted as usual.
    The pool estimators use it to fit thousands of subsets at once."""
    rows = [fitted_values(p) for p in probability_lists]
    table = dict(zip((r.tobytes() for r in rows), fit_weibull_mixtures(rows), strict=True))
    token = _PREFIT.set(table)
    try:
        yield
    finally:
        _PREFIT.reset(token)


def _mixture_of(q: np.ndarray) -> WeibullMixture | None:
    table = _PREFIT.get()
    if table is not None and (key := q.tobytes()) in table:
        return table[key]
    return fit_weibull_mixture(q)


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
    q = fitted_values(p)
    mix = None
    if method == "quantile":
        cut = float(np.quantile(q, quantile))
        kept = [bool(v >= cut) for v in q]
    else:
        mix = _mixture_of(q)
        if mix is None:
            kept = [True] * int(q.size)
        else:
            high = mix.high_membership(q)
            mean = float(q.mean())
            kept = [not (h < 0.5 and v < mean) for h, v in zip(high, q, strict=True)]
    for i, k in zip(np.flatnonzero(usable), kept, strict=True):
        keep[int(i)] = k
    return keep, mix
