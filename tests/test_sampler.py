import numpy as np
import pytest

from ponder.engines.llamacpp import sampler
from ponder.types import SamplingParams


def draw(logits, params, n=20000, seed=0):
    rng = np.random.default_rng(seed)
    return np.bincount(
        [sampler.sample(logits, params, rng) for _ in range(n)], minlength=logits.size
    )


def test_greedy_is_argmax():
    logits = np.array([0.1, 3.0, 2.9, -1.0], dtype=np.float32)
    assert sampler.sample(logits, SamplingParams(temperature=0), np.random.default_rng(0)) == 1


def test_unfiltered_sampling_matches_softmax():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    counts = draw(logits, SamplingParams(temperature=1.0, top_p=1.0, top_k=0, min_p=0.0))
    expected = np.array([0.5, 0.3, 0.15, 0.05]) * counts.sum()
    chi2 = float((((counts - expected) ** 2) / expected).sum())
    assert chi2 < 16.3  # chi-square, 3 dof, p = 0.001


def test_temperature_sharpens():
    logits = np.log(np.array([0.6, 0.4]))
    counts = draw(logits, SamplingParams(temperature=0.5, top_p=1.0, top_k=0, min_p=0.0))
    p0 = 0.36 / (0.36 + 0.16)
    assert counts[0] / counts.sum() == pytest.approx(p0, abs=0.015)


def test_top_k_top_p_min_p_truncate():
    logits = np.log(np.array([0.4, 0.3, 0.2, 0.1]))
    assert set(
        np.flatnonzero(draw(logits, SamplingParams(temperature=1, top_k=2, top_p=1, min_p=0), 3000))
    ) == {0, 1}
    # nucleus 0.65: smallest top set reaching 0.65 is {0, 1}
    assert set(
        np.flatnonzero(
            draw(logits, SamplingParams(temperature=1, top_k=0, top_p=0.65, min_p=0), 3000)
        )
    ) == {0, 1}
    # min_p 0.6: keep p >= 0.24
    assert set(
        np.flatnonzero(
            draw(logits, SamplingParams(temperature=1, top_k=0, top_p=1, min_p=0.6), 3000)
        )
    ) == {0, 1}


def test_nucleus_on_a_large_vocabulary_is_exact():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=150_000)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    keep = sampler._nucleus(p, 0.9)
    order = np.argsort(-p)
    cdf = np.cumsum(p[order])
    n = int(np.searchsorted(cdf, 0.9)) + 1
    assert set(keep.tolist()) == set(order[:n].tolist())


def test_same_seed_same_draws():
    logits = np.random.default_rng(1).normal(size=1000)
    params = SamplingParams(temperature=1.0)
    a = [sampler.sample(logits, params, np.random.default_rng([5, 0])) for _ in range(3)]
    b = [sampler.sample(logits, params, np.random.default_rng([5, 0])) for _ in range(3)]
    assert a == b


def test_log_softmax_normalised():
    lp = sampler.log_softmax(np.array([1.0, 2.0, 3.0]))
    assert np.exp(lp).sum() == pytest.approx(1.0)
    alts = sampler.top_alternatives(lp, 2)
    assert [t for t, _ in alts] == [2, 1]
