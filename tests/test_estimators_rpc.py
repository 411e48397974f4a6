"""RPC's Weibull pruning in the pool estimators: fits batched over subsets equal fits one at
a time bit for bit, agree with the reference bisection fit, and the pool path fits every
subset of a k in one batch yet picks exactly what the live selection function picks."""

import math
from itertools import combinations

import numpy as np
import pytest

from ponder.evals.estimators import candidates_of, estimate, parse_estimators, picker
from ponder.evals.store import PoolRecord, SampleRecord
from ponder.strategies import rpc_pruning


def reference_mle(x, w):
    """The weighted Weibull MLE as first written: 80 bisection steps on log k."""
    lx = np.log(x)
    wsum = w.sum()
    mean_lx = float((w * lx).sum() / wsum)

    def score(k):
        e = w * np.exp(k * (lx - lx.max()))
        return float((e * lx).sum() / e.sum() - 1.0 / k - mean_lx)

    lo, hi = math.log(1e-2), math.log(1e3)
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
    return k, math.exp(top + math.log(float((w * np.exp(k * (lx - top))).sum() / wsum)) / k)


def reference_fit(values):
    """The EM of ``fit_weibull_mixture`` one value list at a time with ``reference_mle``."""
    x = np.maximum(np.asarray(values, dtype=float), 1e-300)
    if x.size < 4 or np.unique(x).size < 2:
        return None
    resp = (x > np.median(x)).astype(float)
    if resp.sum() in (0, x.size):
        resp = (x >= np.median(x)).astype(float)
    resp = np.clip(resp, 1e-6, 1 - 1e-6)
    prev = -math.inf
    for _ in range(200):
        w_hi = float(np.clip(resp.mean(), 0.2, 0.8))
        mix = rpc_pruning.WeibullMixture(w_hi, *reference_mle(x, resp), *reference_mle(x, 1 - resp))
        hi, lo = mix.log_components(x)
        both = np.logaddexp(hi, lo)
        ll = float(both.sum())
        resp = np.clip(np.where(np.isneginf(both), 0.5, np.exp(hi - both)), 1e-9, 1 - 1e-9)
        if abs(ll - prev) < 1e-9 * max(1.0, abs(ll)):
            break
        prev = ll
    mean = [lam * math.gamma(1 + 1 / k) for k, lam in ((mix.k_high, mix.lam_high),)]
    if mean[0] < mix.lam_low * math.gamma(1 + 1 / mix.k_low):
        mix = rpc_pruning.WeibullMixture(
            1 - mix.weight_high, mix.k_low, mix.lam_low, mix.k_high, mix.lam_high
        )
    return mix


def path_probabilities(rng, size):
    """Path probabilities like a pool's: ``exp(mean logprob)`` of two kinds of path, some
    repeated (equal texts), now and then all equal."""
    if rng.random() < 0.05:
        return [0.5] * size
    good = rng.random(size) < 0.6
    lp = np.where(good, rng.normal(-0.15, 0.05, size), rng.normal(-0.6, 0.2, size))
    p = np.exp(np.minimum(lp, -1e-3))
    if size > 4 and rng.random() < 0.3:
        p[1] = p[0]
    return p.tolist()


def test_batched_weibull_fits_equal_fits_one_at_a_time_bit_for_bit():
    rng = np.random.default_rng(17)
    rows = [path_probabilities(rng, int(rng.choice([3, 4, 5, 8, 16]))) for _ in range(120)]
    batched = rpc_pruning.fit_weibull_mixtures(rows)
    alone = [rpc_pruning.fit_weibull_mixture(r) for r in rows]
    assert batched == alone
    assert sum(m is None for m in batched) >= 5 and sum(m is not None for m in batched) >= 80


def test_weibull_fit_agrees_with_the_reference_bisection_and_prunes_alike():
    rng = np.random.default_rng(23)
    for _ in range(60):
        p = path_probabilities(rng, int(rng.choice([4, 6, 8, 16])))
        want, got = reference_fit(p), rpc_pruning.fit_weibull_mixture(p)
        assert (want is None) == (got is None)
        if want is None:
            continue
        assert got.as_dict() == pytest.approx(want.as_dict(), rel=1e-9)
        q = np.asarray(p)
        keep = [
            not (h < 0.5 and v < q.mean()) for h, v in zip(want.high_membership(q), q, strict=True)
        ]
        assert rpc_pruning.rpc_prune(p)[0] == keep


def rpc_pool(rng, n, pid):
    samples = []
    for i, prob in enumerate(path_probabilities(rng, n)):
        answer = str(int(rng.integers(3)))
        samples.append(
            SampleRecord(
                text=f"s{i} answer {answer}",
                answer=answer,
                tokens=5,
                finish_reason="stop",
                correct=answer == "0",
                stats={"mean_logprob": math.log(prob)},
                scores={},
            )
        )
    return PoolRecord("r", pid, 0, "0", tuple(samples), {}, {}, 0.0)


def test_pool_path_fits_every_subset_in_one_batch_and_picks_what_live_rpc_picks(monkeypatch):
    rng = np.random.default_rng(29)
    pools = [rpc_pool(rng, 8, f"p{i}") for i in range(3)]
    [spec] = parse_estimators(["rpc"], [])
    pick = picker(spec)
    truth = {}
    for k in (4, 6):  # C(8, 4) = 70 and C(8, 6) = 28 subsets: all of them are estimated
        per_pool = []
        for pool in pools:
            cands = candidates_of(pool.samples)
            hits = []
            for subset in combinations(range(pool.n), k):
                i = pick([cands[j] for j in subset], [pool.samples[j] for j in subset])
                hits.append(0.0 if i is None else float(pool.samples[subset[i]].correct))
            per_pool.append(float(np.mean(hits)))
        truth[k] = float(np.mean(per_pool))

    batches = []
    real = rpc_pruning.fit_weibull_mixtures

    def counted(rows, iterations=200):
        batches.append(len(rows))
        return real(rows, iterations)

    def one_at_a_time(values, iterations=200):
        raise AssertionError("the pool path fitted a subset on its own")

    monkeypatch.setattr(rpc_pruning, "fit_weibull_mixtures", counted)
    monkeypatch.setattr(rpc_pruning, "fit_weibull_mixture", one_at_a_time)
    got = estimate(pools, [spec], ks=[4, 6], subsets=200)
    assert batches == [3 * 70, 3 * 28]
    assert {e.k: e.accuracy for e in got} == truth
    assert all(e.exact for e in got)
