import itertools
import math

import numpy as np
import pytest

from ponder.evals.metrics import (
    beta_cdf,
    beta_ppf,
    busy_seconds,
    coverage,
    fit_power_law,
    jeffreys_interval,
    k_grid,
    pass_at_k,
    summarize,
    wilson_interval,
)
from ponder.evals.store import CellRecord

Z95 = 1.959963984540054


def test_wilson_known_values():
    # 8 of 10 at 95%: the textbook (0.4902, 0.9433)
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.490162, abs=1e-6) and hi == pytest.approx(0.943318, abs=1e-6)
    # by hand: centre (p + z²/2n) / (1 + z²/n), half-width z·sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n)
    p, n, z2 = 0.3, 20, Z95**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    assert wilson_interval(6, 20) == pytest.approx((centre - half, centre + half), abs=1e-12)
    # no successes: the upper end is z² / (n + z²)
    assert wilson_interval(0, 10) == pytest.approx((0.0, Z95**2 / (10 + Z95**2)), abs=1e-12)
    assert wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    # a 99% interval is wider
    lo99, hi99 = wilson_interval(8, 10, confidence=0.99)
    assert lo99 < lo and hi99 > hi


def test_interval_input_errors():
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(11, 10)
    with pytest.raises(ValueError, match="confidence"):
        jeffreys_interval(1, 10, confidence=1.0)


def test_beta_cdf_matches_closed_forms():
    for x in (0.01, 0.2, 0.5, 0.77, 0.99):
        assert beta_cdf(x, 0.5, 0.5) == pytest.approx(2 / math.pi * math.asin(math.sqrt(x)), 1e-12)
        assert beta_cdf(x, 3.7, 1) == pytest.approx(x**3.7, rel=1e-12)
        assert beta_cdf(x, 1, 2.5) == pytest.approx(1 - (1 - x) ** 2.5, rel=1e-12)
        # integer parameters: I_x(a, b) = P(Binomial(a+b-1, x) >= a)
        a, b = 4, 7
        tail = sum(
            math.comb(a + b - 1, j) * x**j * (1 - x) ** (a + b - 1 - j) for j in range(a, a + b)
        )
        assert beta_cdf(x, a, b) == pytest.approx(tail, rel=1e-10, abs=1e-14)
    assert beta_ppf(0.3, 2, 3) == pytest.approx(0.2723, abs=1e-4)
    assert beta_cdf(beta_ppf(0.3, 2, 3), 2, 3) == pytest.approx(0.3, abs=1e-10)


def test_jeffreys_interval_is_the_beta_posterior_quantiles():
    lo, hi = jeffreys_interval(8, 10)
    # check against numeric integration of the Beta(8.5, 2.5) density
    xs = np.linspace(0, 1, 2_000_001)[1:-1]
    dens = xs**7.5 * (1 - xs) ** 1.5
    cdf = np.cumsum(dens) / dens.sum()
    assert np.interp(lo, xs, cdf) == pytest.approx(0.025, abs=1e-4)
    assert np.interp(hi, xs, cdf) == pytest.approx(0.975, abs=1e-4)
    # symmetric data, symmetric interval; the edge conventions
    lo5, hi5 = jeffreys_interval(5, 10)
    assert lo5 + hi5 == pytest.approx(1.0, abs=1e-9)
    assert jeffreys_interval(0, 10)[0] == 0.0 and jeffreys_interval(10, 10)[1] == 1.0
    assert jeffreys_interval(0, 10)[1] == pytest.approx(beta_ppf(0.975, 0.5, 10.5), abs=1e-12)
    assert jeffreys_interval(0, 0) == (0.0, 1.0)


def test_pass_at_k_equals_brute_force_over_all_subsets():
    for n in range(1, 9):
        for c in range(n + 1):
            samples = [True] * c + [False] * (n - c)
            for k in range(1, n + 1):
                subsets = list(itertools.combinations(samples, k))
                expected = sum(any(s) for s in subsets) / len(subsets)
                assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12), (n, c, k)


def test_pass_at_k_is_stable_for_large_n_and_checks_input():
    assert pass_at_k(10_000, 1, 1) == pytest.approx(1e-4, rel=1e-9)
    assert pass_at_k(10_000, 0, 5000) == 0.0
    assert pass_at_k(10_000, 5001, 5000) == 1.0
    # 1 - C(9000, 100) / C(10000, 100), via log-gamma
    logratio = math.lgamma(9001) - math.lgamma(8901) - math.lgamma(10001) + math.lgamma(9901)
    assert pass_at_k(10_000, 1000, 100) == pytest.approx(1 - math.exp(logratio), rel=1e-9)
    with pytest.raises(ValueError, match="at least 5 samples"):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


def test_coverage_averages_over_problems_with_enough_samples():
    samples = [(4, 1), (4, 0), (2, 2)]
    assert coverage(samples, 1) == pytest.approx((0.25 + 0 + 1) / 3)
    assert coverage(samples, 4) == pytest.approx((1 + 0) / 2)
    assert math.isnan(coverage(samples, 8))
    assert k_grid(16) == [1, 2, 4, 8, 16] and k_grid(12) == [1, 2, 4, 8, 12] and k_grid(1) == [1]


def test_power_law_fit_recovers_known_parameters():
    a, b = -1.3, -0.45
    ks = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256])
    cov = np.exp(a * ks**b)
    fit = fit_power_law(ks, cov)
    assert fit is not None
    assert fit.a == pytest.approx(a, rel=1e-9) and fit.b == pytest.approx(b, rel=1e-9)
    assert fit.r2 == pytest.approx(1.0) and fit.points == 9
    assert fit.predict(1000) == pytest.approx(math.exp(a * 1000**b))
    # noisy data still lands close; points at coverage 0 or 1 are ignored
    rng = np.random.default_rng(0)
    noisy = np.exp(np.log(cov) * np.exp(rng.normal(0, 0.02, len(ks))))
    fit2 = fit_power_law([*ks, 512], [*noisy, 1.0])
    assert fit2 is not None and fit2.points == 9
    assert fit2.a == pytest.approx(a, rel=0.05) and fit2.b == pytest.approx(b, abs=0.03)
    assert fit_power_law([1, 2], [0.5, 1.0]) is None


def _cell(pid, correct, seed=0, tokens=10, seconds=1.0, cands=()):
    return CellRecord(
        run_id="r",
        problem_id=pid,
        strategy="s",
        budget=len(cands) or 1,
        seed=seed,
        answer="1",
        reference="1",
        correct=correct,
        tokens_generated=tokens,
        prompt_tokens_computed=5,
        prompt_tokens_cached=3,
        engine_calls=1,
        scorer_calls=0,
        seconds=seconds,
        candidate_answers=tuple("1" for _ in cands),
        candidates_correct=tuple(cands),
        result={},
    )


def test_summary_uses_problems_as_the_unit_and_cost_per_correct():
    cells = [
        _cell("a", True, 0, tokens=10, cands=(True, False)),
        _cell("a", False, 1, tokens=30, cands=(False, False)),
        _cell("b", True, 0, tokens=20, cands=(True, True)),
        _cell("b", True, 1, tokens=40, cands=(False, True)),
    ]
    s = summarize(cells)
    assert (s.problems, s.cells, s.correct_cells) == (2, 4, 3)
    assert s.accuracy == pytest.approx(0.75)
    assert s.wilson == pytest.approx(wilson_interval(1.5, 2))
    assert s.jeffreys == pytest.approx(jeffreys_interval(1.5, 2))
    assert s.tokens_per_problem == pytest.approx(25.0)
    assert s.tokens_per_correct == pytest.approx(100 / 3)
    assert s.seconds_per_correct == pytest.approx(4 / 3)
    assert s.prompt_computed_per_problem == 5 and s.prompt_cached_per_problem == 3
    assert s.coverage == pytest.approx({1: (0.5 + 0 + 1 + 0.5) / 4, 2: 3 / 4})
    none_right = summarize([_cell("a", False)])
    assert math.isinf(none_right.tokens_per_correct) and none_right.accuracy == 0


def test_busy_seconds_is_the_length_of_the_spans_union():
    assert busy_seconds([]) == 0
    # side by side counts once, nested spans add nothing, a gap between parts not at all
    spans = [(10.0, 20.0), (0.0, 5.0), (15.0, 30.0), (16.0, 18.0), (100.0, 101.5)]
    assert busy_seconds(spans) == pytest.approx(5 + 20 + 1.5)
    # against counting covered points on a fine grid
    rng = np.random.default_rng(0)
    starts = rng.uniform(0, 50, 30)
    spans = [(float(a), float(a + b)) for a, b in zip(starts, rng.uniform(0, 4, 30), strict=False)]
    grid = np.arange(0, 60, 0.001) + 0.0005
    covered = np.zeros_like(grid, dtype=bool)
    for a, b in spans:
        covered |= (grid >= a) & (grid < b)
    assert busy_seconds(spans) == pytest.approx(covered.sum() * 0.001, abs=0.01)
