import math

import numpy as np
import pytest

from ponder.strategies.pairwise_rank import (
    bradley_terry,
    comparison_pairs,
    preference,
    soft_wins,
)
from ponder.types import Completion, TokenLogprob, Usage


def expected_wins(p, games, pairs=None):
    """Win counts that Bradley–Terry with strengths ``p`` expects over ``games`` games."""
    n = len(p)
    pairs = pairs or [(i, j) for i in range(n) for j in range(i + 1, n)]
    w = np.zeros((n, n))
    for i, j in pairs:
        w[i, j] = games * p[i] / (p[i] + p[j])
        w[j, i] = games * p[j] / (p[i] + p[j])
    return w


def test_recovers_strengths_from_expected_win_counts():
    # Expected counts satisfy the likelihood equations exactly, so the MLE is p itself.
    p = np.array([0.4, 0.3, 0.2, 0.1])
    fit = bradley_terry(expected_wins(p, 10))
    np.testing.assert_allclose(fit, p, atol=1e-9)
    assert fit.sum() == pytest.approx(1.0)


def test_recovers_strengths_on_an_incomplete_connected_graph():
    p = np.array([5.0, 1.0, 3.0, 0.5, 2.0, 8.0])
    p = p / p.sum()
    pairs = comparison_pairs(6, max_all_pairs=4, opponents=1)  # a 6-cycle
    assert len(pairs) == 6
    np.testing.assert_allclose(bradley_terry(expected_wins(p, 7, pairs)), p, atol=1e-8)


def test_scaling_the_counts_does_not_change_the_fit():
    rng = np.random.default_rng(3)
    w = rng.integers(0, 6, size=(5, 5)).astype(float) + 0.5
    np.testing.assert_allclose(bradley_terry(w), bradley_terry(4 * w), atol=1e-9)


def test_transitive_tournament_ranks_in_order():
    n = 5
    w = np.triu(np.ones((n, n)), k=1)  # i beats every j > i
    fit = bradley_terry(w, prior=0.2)
    assert np.all(np.diff(fit) < 0)
    assert np.all(fit > 0)
    # Without a prior the MLE lies at infinity; the iteration still returns an ordered,
    # finite answer and the player who never wins gets exactly 0.
    raw = bradley_terry(w)
    assert np.all(np.isfinite(raw))
    assert np.all(np.diff(raw) <= 0)
    assert raw[-1] == 0.0 and raw[0] > 0.9


def test_a_player_who_never_wins_is_zero_without_nan():
    p = np.array([0.5, 0.3, 0.2])
    w = np.zeros((4, 4))
    w[:3, :3] = expected_wins(p, 6)
    w[:3, 3] = 2.0  # everyone beats player 3, who wins nothing
    fit = bradley_terry(w)
    assert not np.any(np.isnan(fit))
    assert fit[3] == 0.0
    assert fit[0] > fit[1] > fit[2] > 0
    assert bradley_terry(w, prior=0.5)[3] > 0


def test_a_player_who_never_played_keeps_the_start_and_nothing_breaks():
    w = np.zeros((3, 3))
    w[0, 1], w[1, 0] = 3.0, 1.0
    fit = bradley_terry(w)
    assert not np.any(np.isnan(fit))
    assert fit[0] / fit[1] == pytest.approx(3.0)
    np.testing.assert_allclose(bradley_terry(np.zeros((3, 3))), [1 / 3] * 3)
    assert bradley_terry(np.zeros((0, 0))).shape == (0,)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="square"):
        bradley_terry(np.ones((2, 3)))
    with pytest.raises(ValueError, match="non-negative"):
        bradley_terry(np.array([[0, -1], [1, 0]]))
    with pytest.raises(ValueError, match="prior"):
        bradley_terry(np.ones((2, 2)), prior=-1)


def test_both_orders_cancel_a_pure_position_bias():
    # A judge that always prefers whatever it sees first by 0.8 expresses no preference.
    pairs = [(0, 1), (0, 2), (1, 2)]
    w = soft_wins(3, pairs, [(0.8, 0.8)] * 3)
    np.testing.assert_allclose(w, np.where(np.eye(3) == 1, 0.0, 1.0))
    np.testing.assert_allclose(bradley_terry(w), [1 / 3] * 3)


def test_soft_wins_credit_each_order():
    w = soft_wins(2, [(0, 1)], [(0.9, 0.3)])
    # 0 first: 0 wins 0.9; 1 first: 1 wins 0.3, so 0 wins 0.7.
    assert w[0, 1] == pytest.approx(1.6) and w[1, 0] == pytest.approx(0.4)


def test_comparison_pairs():
    assert comparison_pairs(3, 8, 2) == [(0, 1), (0, 2), (1, 2)]
    pairs = comparison_pairs(10, 8, 2)
    assert len(pairs) == 20 and len(set(pairs)) == 20
    meets = np.bincount(np.array(pairs).ravel(), minlength=10)
    assert np.all(meets == 4)
    assert comparison_pairs(1, 8, 2) == []


def _judged(top):
    lp = (TokenLogprob(top[0][0], top[0][1], tuple(top)),) if top else None
    return Completion("A", 1, "length", Usage(), lp)


def test_preference_reads_top_logprobs():
    top = [(" A", math.log(0.6)), ("B", math.log(0.2)), (" the", math.log(0.1))]
    assert preference(_judged(top)) == pytest.approx(0.75)
    both_a = [("A", math.log(0.3)), (" A", math.log(0.3)), ("(B", math.log(0.2))]
    assert preference(_judged(both_a)) == pytest.approx(0.75)
    assert preference(_judged([(" I", -0.1)])) == 0.5
    assert preference(_judged([])) == 0.5
