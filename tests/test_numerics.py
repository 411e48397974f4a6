import math

import numpy as np
import pytest

from ponder.strategies import confidence, rpc_pruning, stopping
from ponder.strategies import numerics as nm


def test_cluster_sums_and_leader():
    clusters = {"a": [0, 2], "b": [1]}
    assert nm.cluster_sums(clusters, [0.5, 0.25, 1.0]) == {"a": 1.5, "b": 0.25}
    assert nm.leader({"a": 1.5, "b": 0.25}) == "a"
    # ties: the larger cluster, then the key seen first
    assert nm.leader({"a": 1.0, "b": 1.0}, {"a": [0], "b": [1, 2]}) == "b"
    assert nm.leader({"a": 1.0, "b": 1.0}) == "a"
    assert nm.leader({}) is None


def test_cluster_log_sums_do_not_underflow():
    # exp(-1000) is 0.0 in floating point; the log-space sums still rank the clusters
    clusters = {"a": [0, 1], "b": [2]}
    totals = nm.cluster_log_sums(clusters, [-1000.0, -1001.0, -999.0])
    assert totals["a"] == pytest.approx(-1000 + math.log(1 + math.exp(-1)))
    assert totals["b"] == -999.0
    assert nm.leader(totals) == "b"
    shares = nm.normalized_shares(totals)
    assert shares["b"] == pytest.approx(1 / (1 + math.exp(-1) * (1 + math.exp(-1))))
    assert sum(shares.values()) == pytest.approx(1.0)
    assert nm.cluster_log_sums({"a": [0]}, [-math.inf]) == {"a": -math.inf}


def test_log_path_weight():
    assert nm.log_path_weight([-1.0, -3.0], length_normalize=True) == -2.0
    assert nm.log_path_weight([-1.0, -3.0], length_normalize=False) == -4.0
    assert nm.log_path_weight([], length_normalize=True) is None


def test_perplexity_consistency_counts_distinct_paths_once():
    clusters = {"1": [0, 1, 2], "2": [3]}
    texts = ["x", "x", "y", "z"]
    probs = [0.5, 0.5, 0.2, 0.1]
    assert nm.distinct_path_sums(clusters, texts, probs) == pytest.approx({"1": 0.7, "2": 0.1})
    kept = nm.distinct_path_sums(clusters, texts, probs, keep=[True, True, False, True])
    assert kept == pytest.approx({"1": 0.5, "2": 0.1})


def test_rpc_pruning_rules():
    keep, mix = rpc_pruning.rpc_prune([0.1, 0.2, 0.3, 0.4, 0.5], "quantile", 0.25)
    assert keep == [False, True, True, True, True] and mix is None
    assert rpc_pruning.rpc_prune([0.3, 0.1], "none")[0] == [True, True]
    # two well separated groups: the low one goes
    keep, mix = rpc_pruning.rpc_prune([0.9, 0.88, 0.92, 0.91, 0.05, 0.06])
    assert keep == [True, True, True, True, False, False]
    assert mix is not None and mix.lam_high > mix.lam_low
    # a low path above the mean is kept even if the low component explains it
    keep, _ = rpc_pruning.rpc_prune([0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    assert keep == [True, True] + [False] * 6
    # nothing to fit: identical values, or fewer than 4 paths
    assert rpc_pruning.rpc_prune([0.5] * 6) == ([True] * 6, None)
    assert rpc_pruning.rpc_prune([0.9, 0.1, 0.5]) == ([True] * 3, None)
    with pytest.raises(ValueError, match="unknown pruning"):
        rpc_pruning.rpc_prune([0.5], "median")


def test_rpc_pruning_leaves_empty_paths_out_of_the_fit():
    # Two empty paths (p = 0) used to be clamped to 1e-300 and fitted: they formed the low
    # component on their own, so the unlikely real paths (0.3, 0.31) survived, and the
    # empty paths were kept. Now they are dropped and the fit sees only real paths.
    probs = [0.0, 0.0, 0.6, 0.62, 0.65, 0.3, 0.31]
    keep, mix = rpc_pruning.rpc_prune(probs)
    assert keep == [False, False, True, True, True, False, False]
    assert keep[2:] == rpc_pruning.rpc_prune(probs[2:])[0] and mix is not None
    keep, _ = rpc_pruning.rpc_prune([0.0, 0.1, 0.2, 0.3, 0.4, 0.5], "quantile", 0.25)
    assert keep == [False, False, True, True, True, True]
    assert rpc_pruning.rpc_prune([0.0, 0.0]) == ([False, False], None)
    assert rpc_pruning.rpc_prune([0.0, 0.5], "none")[0] == [True, True]


def test_weibull_mixture_recovers_its_parameters():
    rng = np.random.default_rng(7)
    n = 3000
    high = rng.random(n) < 0.6
    x = np.where(high, 0.8 * rng.weibull(8.0, n), 0.2 * rng.weibull(3.0, n))
    mix = rpc_pruning.fit_weibull_mixture(x)
    assert mix is not None
    assert mix.weight_high == pytest.approx(0.6, abs=0.03)
    assert mix.k_high == pytest.approx(8.0, rel=0.1)
    assert mix.lam_high == pytest.approx(0.8, rel=0.02)
    assert mix.k_low == pytest.approx(3.0, rel=0.1)
    assert mix.lam_low == pytest.approx(0.2, rel=0.05)
    member = mix.high_membership(x)
    assert ((member > 0.5) == high).mean() > 0.97


def test_beta_leader_probability_is_exact():
    # P(Beta(v1+1, v2+1) > 1/2) = P(Binomial(v1+v2+1, 1/2) <= v1)
    assert stopping.beta_leader_probability([3]) == 15 / 16
    assert stopping.beta_leader_probability([4]) == 31 / 32
    assert stopping.beta_leader_probability([1, 5]) == 120 / 128
    assert stopping.beta_leader_probability([6, 1]) == 247 / 256
    assert stopping.beta_leader_probability([3, 1, 1]) == 26 / 32
    assert stopping.beta_leader_probability([2, 2]) == 0.5


def test_dirichlet_leader_probability():
    rng = np.random.default_rng(0)
    # one seen answer against the unseen category is the Beta(v+1, 1) case: 1 - 2^-(v+1)
    assert stopping.dirichlet_leader_probability([4], rng) == pytest.approx(31 / 32, abs=0.005)
    # a tie: either leader is as likely (the unseen category almost never leads)
    assert stopping.dirichlet_leader_probability([5, 5], rng) == pytest.approx(0.5, abs=0.012)
    assert stopping.dirichlet_leader_probability([30, 1], rng) > 0.99
    assert stopping.dirichlet_leader_probability([], rng) == 0.0
    a = stopping.dirichlet_leader_probability([3, 2], np.random.default_rng(1))
    assert a == stopping.dirichlet_leader_probability([3, 2], np.random.default_rng(1))


def test_unanimous_window():
    assert stopping.unanimous_window(["a", "a"], "a")
    assert not stopping.unanimous_window(["a", "b"], "a")
    assert not stopping.unanimous_window(["a", None], "a")
    assert not stopping.unanimous_window(["b", "b"], "a")
    assert not stopping.unanimous_window([], "a")


def test_deepconf_confidences():
    conf = confidence.token_confidences([[-0.1, -2.0, -3.9], [-1.0, -1.0, -1.0]])
    assert conf.tolist() == pytest.approx([2.0, 1.0])
    with pytest.raises(ValueError, match="no top log-probabilities"):
        confidence.token_confidences([[]])
    assert confidence.group_confidences([1, 2, 3, 4], 2).tolist() == [1.5, 2.5, 3.5]
    assert confidence.group_confidences([1, 2, 3, 4], 10).tolist() == [2.5]
    assert confidence.group_confidences([], 2).size == 0
    c = [4, 1, 1, 4, 4]  # groups of 2: 2.5, 1, 2.5, 4
    assert confidence.trace_confidence(c, 2, "lowest") == 1.0
    assert confidence.trace_confidence(c, 2, "bottom10") == 1.0
    assert confidence.trace_confidence(c, 2, "tail") == 4.0
    assert confidence.trace_confidence(c, 2, "mean") == 2.8
    # 20 groups of one token: the bottom 10% is the two lowest
    assert confidence.trace_confidence(list(range(20)), 1, "bottom10") == 0.5
    assert confidence.trace_confidence([], 2) == 0.0
    with pytest.raises(ValueError, match="trace confidence"):
        confidence.trace_confidence(c, 2, "median")


def test_token_confidence_counts_the_sampled_token_outside_the_top_k():
    # the sampled token (log-prob -5) is less likely than every alternative: it joins them,
    # as in the authors' vLLM logprobs (k + 1 entries)
    assert confidence.token_confidences([[-1.0, -2.0]], [-5.0]).tolist() == pytest.approx([8 / 3])
    # a sampled token inside the top-k is already counted once
    assert confidence.token_confidences([[-1.0, -2.0]], [-1.0]).tolist() == pytest.approx([1.5])
    assert confidence.token_confidences([[-1.0, -2.0]], [-2.0]).tolist() == pytest.approx([1.5])
    with pytest.raises(ValueError, match="1 sampled log-probabilities for 2 positions"):
        confidence.token_confidences([[-1.0], [-1.0]], [-1.0])


def test_online_stop_tests_only_full_windows():
    assert confidence.lowest_full_group([4, 1, 1], 4) is None  # no full window yet
    assert confidence.lowest_full_group([], 1) is None
    assert confidence.lowest_full_group([4, 1, 1, 4, 4], 2) == 1.0
    assert confidence.lowest_full_group([4, 1, 1, 4], 4) == 2.5
    with pytest.raises(ValueError, match="window must be >= 1"):
        confidence.lowest_full_group([1.0], 0)


def test_confidence_filter_keeps_the_top_percent():
    keep, cut = confidence.confidence_filter([8, 8, 2, 2, 5], 50)
    assert cut == 5.0 and keep == [True, True, False, False, True]
    keep, cut = confidence.confidence_filter([8, 8, 2, 2, 5], 100)
    assert keep == [True] * 5 and cut == 2.0
    with pytest.raises(ValueError, match="keep_percent"):
        confidence.confidence_filter([1.0], 0)
