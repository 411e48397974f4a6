"""Metrics with honest uncertainty, pass@k, coverage, cost per correct answer, scaling fits.

Small evaluations get Wilson or Jeffreys (Beta posterior) intervals, never the normal
approximation ("Don't use the CLT in LLM evals with fewer than a few hundred datapoints").
With several seeds per problem, the unit of sampling is the problem: accuracy is the mean
over problems of each problem's mean correctness over seeds, and intervals use the number of
problems (with fractional successes), not the number of cells.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from ponder.evals.store import CellRecord


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion:
    ``(p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)`` with ``p = successes / n``.
    ``(0, 1)`` when ``n == 0``."""
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return (0.0, 1.0)
    z = _z(confidence)
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, center - half), min(1.0, center + half))


def beta_cdf(x: float, a: float, b: float) -> float:
    """The regularised incomplete beta function ``I_x(a, b)`` (the Beta(a, b) CDF), by its
    continued fraction (modified Lentz), using the symmetry ``I_x(a,b) = 1 - I_{1-x}(b,a)``
    where the fraction converges slowly."""
    if a <= 0 or b <= 0:
        raise ValueError(f"Beta parameters must be positive, got a={a}, b={b}")
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    if x > (a + 1) / (a + b + 2):
        return 1.0 - beta_cdf(1.0 - x, b, a)
    log_front = a * math.log(x) + b * math.log1p(-x) - _log_beta(a, b) - math.log(a)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    frac = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            frac *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return math.exp(log_front) * frac


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def beta_ppf(q: float, a: float, b: float) -> float:
    """The ``q`` quantile of Beta(a, b), by bisection on ``beta_cdf`` (to 1e-12)."""
    if not 0 <= q <= 1:
        raise ValueError(f"q must be in [0, 1], got {q}")
    lo, hi = 0.0, 1.0
    while hi - lo > 1e-12:
        mid = (lo + hi) / 2
        if beta_cdf(mid, a, b) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def jeffreys_interval(successes: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Equal-tailed credible interval of the Beta(successes + ½, n − successes + ½)
    posterior (Jeffreys prior); the lower end is 0 when there are no successes and the
    upper end 1 when all are successes (Brown, Cai & DasGupta 2001)."""
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n == 0:
        return (0.0, 1.0)
    a, b = successes + 0.5, n - successes + 0.5
    tail = (1 - confidence) / 2
    lo = 0.0 if successes == 0 else beta_ppf(tail, a, b)
    hi = 1.0 if successes == n else beta_ppf(1 - tail, a, b)
    return (lo, hi)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` are correct (Chen et al. 2021):
    ``1 − C(n−c, k) / C(n, k)``, computed as ``1 − Π_{i=n−c+1..n} (1 − k/i)`` so no
    binomial coefficient is ever formed."""
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"need 0 <= c <= n and k >= 1, got n={n}, c={c}, k={k}")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def coverage(samples: Sequence[tuple[int, int]], k: int) -> float:
    """Mean pass@k over problems given as ``(n samples, c correct)``; problems with fewer than
    ``k`` samples are left out. NaN when none is left."""
    values = [pass_at_k(n, c, k) for n, c in samples if n >= k]
    return float(np.mean(values)) if values else float("nan")


def k_grid(n: int) -> list[int]:
    """1, 2, 4, ... up to ``n``, and ``n`` itself."""
    ks = [1]
    while ks[-1] * 2 <= n:
        ks.append(ks[-1] * 2)
    if ks[-1] != n and n > 0:
        ks.append(n)
    return ks


@dataclass(frozen=True)
class PowerLaw:
    """Brown et al. 2024 ("Large Language Monkeys"): ``log coverage(k) ≈ a·k^b``, i.e.
    ``coverage(k) ≈ exp(a·k^b)`` with ``a < 0``; ``b < 0`` when coverage grows with k."""

    a: float
    b: float
    r2: float
    points: int

    def predict(self, k: float | np.ndarray) -> np.ndarray:
        return np.exp(self.a * np.power(np.asarray(k, dtype=float), self.b))


def fit_power_law(ks: Sequence[float], coverages: Sequence[float]) -> PowerLaw | None:
    """Least-squares fit of ``log(−log coverage) = c + b·log k`` (so ``a = −exp(c)``).

    Points with coverage 0 or 1 carry no information in this space and are dropped; None when
    fewer than two distinct k remain."""
    pts = [
        (float(k), float(cv))
        for k, cv in zip(ks, coverages, strict=True)
        if k > 0 and 0 < cv < 1 and math.isfinite(cv)
    ]
    if len({k for k, _ in pts}) < 2:
        return None
    x = np.log([k for k, _ in pts])
    y = np.log(-np.log([cv for _, cv in pts]))
    b, c = np.polyfit(x, y, 1)
    resid = y - (c + b * x)
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / total if total > 0 else 1.0
    return PowerLaw(a=-math.exp(c), b=float(b), r2=r2, points=len(pts))


def busy_seconds(spans: Sequence[tuple[float, float]]) -> float:
    """The wall time covered by at least one of the ``(start, end)`` spans: the length of
    their union. Work run side by side counts once, and the gaps between the parts of a
    run resumed later (or while it was stopped) count not at all."""
    total, reach = 0.0, -math.inf
    for start, end in sorted(spans):
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return total


@dataclass(frozen=True)
class Summary:
    """The metrics of one group of cells (one run × strategy × budget)."""

    problems: int
    cells: int
    correct_cells: int
    accuracy: float
    wilson: tuple[float, float]
    jeffreys: tuple[float, float]
    tokens_per_problem: float
    prompt_computed_per_problem: float
    prompt_cached_per_problem: float
    seconds_per_problem: float
    tokens_per_correct: float
    seconds_per_correct: float
    samples_per_cell: float
    coverage: dict[int, float] = field(default_factory=dict)
    power_law: PowerLaw | None = None


def summarize(cells: Sequence[CellRecord], confidence: float = 0.95) -> Summary:
    """Accuracy with intervals, mean cost per cell, cost per correct answer (total cost /
    correct cells; inf when none is correct), coverage@k over candidates, its power-law fit."""
    if not cells:
        raise ValueError("no cells to summarise")
    by_problem: dict[str, list[bool]] = defaultdict(list)
    for cell in cells:
        by_problem[cell.problem_id].append(cell.correct)
    per_problem = [float(np.mean(v)) for v in by_problem.values()]
    n = len(per_problem)
    successes = float(sum(per_problem))
    correct = sum(c.correct for c in cells)
    tokens = sum(c.tokens_generated for c in cells)
    seconds = sum(c.seconds for c in cells)
    samples = [(len(c.candidates_correct), sum(c.candidates_correct)) for c in cells]
    max_n = max(s for s, _ in samples)
    cov = {k: coverage(samples, k) for k in k_grid(max_n)} if max_n else {}
    cov = {k: v for k, v in cov.items() if not math.isnan(v)}
    return Summary(
        problems=n,
        cells=len(cells),
        correct_cells=correct,
        accuracy=successes / n,
        wilson=wilson_interval(successes, n, confidence),
        jeffreys=jeffreys_interval(successes, n, confidence),
        tokens_per_problem=tokens / len(cells),
        prompt_computed_per_problem=sum(c.prompt_tokens_computed for c in cells) / len(cells),
        prompt_cached_per_problem=sum(c.prompt_tokens_cached for c in cells) / len(cells),
        seconds_per_problem=seconds / len(cells),
        tokens_per_correct=tokens / correct if correct else math.inf,
        seconds_per_correct=seconds / correct if correct else math.inf,
        samples_per_cell=float(np.mean([s for s, _ in samples])),
        coverage=cov,
        power_law=fit_power_law(list(cov), list(cov.values())) if len(cov) >= 2 else None,
    )
