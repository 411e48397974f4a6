import math

import numpy as np
import pytest

from ponder.strategies.resampling import (
    aggregate_scores,
    derive_seed,
    effective_sample_size,
    logit,
    multinomial_resample,
    normalize_weights,
    resample,
    softmax_weights,
    systematic_resample,
)


def test_softmax_weights_exact_values():
    np.testing.assert_allclose(softmax_weights([0.0, math.log(3)]), [0.25, 0.75])
    # temperature divides the scores: T = 2 on doubled scores gives the same weights
    np.testing.assert_allclose(softmax_weights([0.0, 2 * math.log(3)], 2.0), [0.25, 0.75])
    np.testing.assert_allclose(softmax_weights([5.0, 5.0, 5.0, 5.0]), [0.25] * 4)
    # huge scores do not overflow: only differences matter
    np.testing.assert_allclose(softmax_weights([1000.0, 1000.0 + math.log(3)]), [0.25, 0.75])
    # low temperature concentrates, high temperature flattens
    assert softmax_weights([0.0, 1.0], 0.01)[1] > 0.999
    np.testing.assert_allclose(softmax_weights([0.0, 1.0], 1e9), [0.5, 0.5])


@pytest.mark.parametrize("t", [0.0, -1.0])
def test_softmax_rejects_non_positive_temperature(t):
    with pytest.raises(ValueError, match="temperature must be > 0"):
        softmax_weights([1.0, 2.0], t)


def test_softmax_rejects_bad_scores():
    with pytest.raises(ValueError, match="non-empty"):
        softmax_weights([])
    with pytest.raises(ValueError, match="finite"):
        softmax_weights([1.0, float("nan")])


def test_logit():
    np.testing.assert_allclose(logit([0.5, 0.75, 0.25]), [0.0, math.log(3), -math.log(3)])
    # 0 and 1 are clipped, not infinite
    out = logit([0.0, 1.0])
    assert np.all(np.isfinite(out)) and out[0] == pytest.approx(-out[1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        logit([1.5])


def test_effective_sample_size():
    assert effective_sample_size([1, 1, 1, 1]) == pytest.approx(4.0)
    assert effective_sample_size([0, 0, 7, 0]) == pytest.approx(1.0)
    # normalised [0.5, 0.25, 0.25]: 1 / (0.25 + 0.0625 + 0.0625) = 8/3
    assert effective_sample_size([2, 1, 1]) == pytest.approx(8 / 3)


def test_normalize_weights_rejects_bad_weights():
    np.testing.assert_allclose(normalize_weights([1, 3]), [0.25, 0.75])
    for bad in ([], [0, 0], [-1, 2], [1, float("inf")]):
        with pytest.raises(ValueError):
            normalize_weights(bad)


def test_aggregate_scores_exact_values():
    s = [0.9, 0.5, 0.8]
    assert aggregate_scores(s, "last") == pytest.approx(0.8)
    assert aggregate_scores(s, "min") == pytest.approx(0.5)
    assert aggregate_scores(s, "prod") == pytest.approx(0.36)
    assert aggregate_scores(s, "mean") == pytest.approx(2.2 / 3)
    with pytest.raises(ValueError, match="unknown score aggregation 'max'"):
        aggregate_scores(s, "max")
    with pytest.raises(ValueError, match="empty path"):
        aggregate_scores([], "last")


W = np.array([0.1, 0.2, 0.3, 0.4])


def test_multinomial_counts_match_binomial_expectation():
    n = 20_000
    idx = multinomial_resample(W, n, np.random.default_rng(123))
    assert idx.shape == (n,) and np.all(np.diff(idx) >= 0)
    counts = np.bincount(idx, minlength=4)
    sd = np.sqrt(n * W * (1 - W))
    # each count is Binomial(n, w_i): within 4 standard deviations of n * w_i
    assert np.all(np.abs(counts - n * W) < 4 * sd), counts


def test_multinomial_is_reproducible_and_uses_the_generator():
    a = multinomial_resample(W, 50, np.random.default_rng(7))
    b = multinomial_resample(W, 50, np.random.default_rng(7))
    c = multinomial_resample(W, 50, np.random.default_rng(8))
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist()


def test_multinomial_never_picks_zero_weight():
    idx = multinomial_resample([0.0, 1.0, 0.0], 100, np.random.default_rng(0))
    assert set(idx.tolist()) == {1}


def test_systematic_counts_are_floor_or_ceil_of_expectation():
    w = np.array([0.15, 0.35, 0.5])
    n = 10
    for seed in range(200):
        counts = np.bincount(systematic_resample(w, n, np.random.default_rng(seed)), minlength=3)
        assert counts.sum() == n
        assert np.all(counts >= np.floor(n * w)) and np.all(counts <= np.ceil(n * w)), counts


def test_systematic_is_unbiased():
    # particle 0 expects 1.5 copies: 1 or 2 with probability 1/2 each (variance 1/4), so
    # the mean over 4000 draws has standard deviation 0.5 / sqrt(4000) ~ 0.0079
    w = np.array([0.15, 0.35, 0.5])
    rng = np.random.default_rng(2024)
    draws = np.array(
        [np.bincount(systematic_resample(w, 10, rng), minlength=3) for _ in range(4000)]
    )
    mean = draws.mean(axis=0)
    assert abs(mean[0] - 1.5) < 4 * 0.5 / math.sqrt(4000)
    assert abs(mean[1] - 3.5) < 4 * 0.5 / math.sqrt(4000)
    assert np.all(draws[:, 2] == 5)


def test_resample_dispatch_and_errors():
    rng = np.random.default_rng(0)
    assert len(resample(W, 6, rng, "systematic")) == 6
    assert len(resample(W, 6, rng)) == 6
    with pytest.raises(ValueError, match="unknown resampling method 'stratified'"):
        resample(W, 3, rng, "stratified")
    assert systematic_resample(W, 0, rng).size == 0


def test_derive_seed():
    assert derive_seed(None, 1, 2) is None
    a = derive_seed(0, 1, 2)
    assert a == derive_seed(0, 1, 2) and 0 <= a < 2**31
    seeds = {derive_seed(0, r, j) for r in range(40) for j in range(64)}
    assert len(seeds) == 40 * 64  # no collisions across rounds and requests
    assert derive_seed(1, 1, 2) != a
    with pytest.raises(ValueError):
        derive_seed(-1, 0)
