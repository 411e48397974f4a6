"""Numerics of step-level search: weights, resampling, effective sample size, aggregation.

Pure functions. Randomness comes only from the ``numpy.random.Generator`` passed in, so
the same generator state gives the same result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "AGGREGATIONS",
    "RESAMPLERS",
    "aggregate_scores",
    "derive_seed",
    "effective_sample_size",
    "logit",
    "multinomial_resample",
    "normalize_weights",
    "resample",
    "softmax_weights",
    "systematic_resample",
]


def softmax_weights(scores: ArrayLike, temperature: float = 1.0) -> NDArray[np.float64]:
    """``w_i = exp(s_i / T) / sum_j exp(s_j / T)``, computed stably (max subtracted first).

    ``T -> 0`` puts all weight on the best score, ``T -> inf`` makes the weights uniform.
    """
    if not temperature > 0:
        raise ValueError(f"softmax temperature must be > 0, got {temperature}")
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError("softmax needs a non-empty 1-d list of scores")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"scores must be finite to weight them, got {s.tolist()}")
    z = (s - s.max()) / temperature
    e = np.exp(z)
    return e / e.sum()


def logit(p: ArrayLike, eps: float = 1e-7) -> NDArray[np.float64]:
    """``log(p / (1 - p))`` with ``p`` clipped to ``[eps, 1 - eps]``; ``p`` must be in [0, 1]."""
    x = np.asarray(p, dtype=np.float64)
    if np.any((x < 0) | (x > 1)) or not np.all(np.isfinite(x)):
        raise ValueError(f"logit needs probabilities in [0, 1], got {x.tolist()}")
    x = np.clip(x, eps, 1 - eps)
    return np.log(x / (1 - x))


def normalize_weights(weights: ArrayLike) -> NDArray[np.float64]:
    """``weights / sum(weights)``; weights must be finite, non-negative, not all zero."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size == 0:
        raise ValueError("weights must be a non-empty 1-d list")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"weights must be finite and >= 0, got {w.tolist()}")
    total = w.sum()
    if total <= 0:
        raise ValueError("weights must not all be zero")
    return w / total


def effective_sample_size(weights: ArrayLike) -> float:
    """Kish's effective sample size ``1 / sum_i w_i^2`` of the normalised weights.

    ``N`` for uniform weights over ``N`` particles, ``1`` when one particle has all weight.
    """
    w = normalize_weights(weights)
    return float(1.0 / np.sum(w * w))


def multinomial_resample(weights: ArrayLike, n: int, rng: np.random.Generator) -> NDArray[np.intp]:
    """``n`` ancestor indices drawn i.i.d. with ``P(i) = w_i`` (sorted ascending).

    The number of copies of particle ``i`` is Binomial(n, w_i).
    """
    w = normalize_weights(weights)
    if n < 0:
        raise ValueError(f"cannot draw {n} particles")
    counts = rng.multinomial(n, w)
    return np.repeat(np.arange(w.size), counts)


def systematic_resample(weights: ArrayLike, n: int, rng: np.random.Generator) -> NDArray[np.intp]:
    """``n`` ancestor indices by systematic resampling (sorted ascending).

    One uniform ``u ~ U[0, 1/n)``; the points ``u + k/n`` (``k = 0..n-1``) pick the particle
    whose cumulative-weight interval contains them. Particle ``i`` gets ``floor(n w_i)`` or
    ``ceil(n w_i)`` copies: same expectation as multinomial, much lower variance.
    """
    w = normalize_weights(weights)
    if n < 0:
        raise ValueError(f"cannot draw {n} particles")
    if n == 0:
        return np.zeros(0, dtype=np.intp)
    points = (rng.uniform(0.0, 1.0) + np.arange(n)) / n
    cdf = np.cumsum(w)
    cdf[-1] = 1.0  # guard against rounding leaving the last interval short of 1
    return np.searchsorted(cdf, points, side="right").astype(np.intp)


Resampler = Callable[[ArrayLike, int, np.random.Generator], NDArray[np.intp]]

RESAMPLERS: dict[str, Resampler] = {
    "multinomial": multinomial_resample,
    "systematic": systematic_resample,
}


def resample(
    weights: ArrayLike, n: int, rng: np.random.Generator, method: str = "multinomial"
) -> NDArray[np.intp]:
    """``n`` ancestor indices by ``method`` (one of ``RESAMPLERS``)."""
    try:
        fn = RESAMPLERS[method]
    except KeyError:
        raise ValueError(
            f"unknown resampling method {method!r}; known: {', '.join(RESAMPLERS)}"
        ) from None
    return fn(weights, n, rng)


def _last(s: NDArray[np.float64]) -> float:
    return float(s[-1])


def _min(s: NDArray[np.float64]) -> float:
    return float(s.min())


def _prod(s: NDArray[np.float64]) -> float:
    return float(np.prod(s))


def _mean(s: NDArray[np.float64]) -> float:
    return float(s.mean())


_AGGREGATORS: dict[str, Callable[[NDArray[np.float64]], float]] = {
    "last": _last,
    "min": _min,
    "prod": _prod,
    "mean": _mean,
}
AGGREGATIONS = tuple(_AGGREGATORS)
"""How a path's step scores become one score: ``last`` (the scorer's judgement of the
whole prefix, the default of search-and-learn and the "model aggregation" of Puri et al.),
``min`` (the weakest step), ``prod`` (all steps correct, independence assumed), ``mean``."""


def aggregate_scores(scores: Sequence[float], how: str = "last") -> float:
    """One score for a path from its per-step scores, by ``how`` (see ``AGGREGATIONS``)."""
    try:
        fn = _AGGREGATORS[how]
    except KeyError:
        raise ValueError(
            f"unknown score aggregation {how!r}; known: {', '.join(AGGREGATIONS)}"
        ) from None
    if len(scores) == 0:
        raise ValueError("cannot aggregate the scores of an empty path")
    return fn(np.asarray(scores, dtype=np.float64))


def derive_seed(seed: int | None, *keys: int) -> int | None:
    """A 31-bit seed for the work identified by ``keys`` (e.g. iteration, round, request).

    Distinct keys give unrelated seeds (``numpy.random.SeedSequence`` mixes them), so
    requests of different rounds never share a random stream. ``None`` stays ``None``
    (the engine then picks its own).
    """
    if seed is None:
        return None
    if seed < 0 or any(k < 0 for k in keys):
        raise ValueError(f"seeds and keys must be >= 0, got {seed}, {keys}")
    state = np.random.SeedSequence([seed, *keys]).generate_state(1)[0]
    return int(state) & 0x7FFFFFFF
