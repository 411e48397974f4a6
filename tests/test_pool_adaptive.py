"""Adaptive rules estimated from sample pools: early-stop-vote replayed over random orders of
a pool's samples, checked against enumeration of every order, and against the live strategy
drawing the same samples window by window (scripted engine and the real small model)."""

import asyncio
import math
from itertools import permutations

import numpy as np
import pytest
from test_pool import Recording, TopScripted, synthetic_pool

from ponder.evals.estimators import (
    ADAPTIVE,
    adaptive_estimate,
    candidates_of,
    estimate,
    orders_for,
    parse_estimators,
)
from ponder.evals.pool import PoolConfig, draw_pool, pool_record
from ponder.evals.store import PoolRecord
from ponder.options import parse_pairs
from ponder.strategies import create, early_stop_vote
from ponder.tasks import create_task
from ponder.types import Budget

RULES = [
    "early-stop-vote",
    "early-stop-vote[window=2]",
    "early-stop-vote[window=1;rule=beta]",
    "early-stop-vote[window=3;rule=beta;confidence=0.8]",
]


def every_order(spec, pool, k):
    """(accuracy, tokens) of the rule averaged over every ordered k-sample of the pool."""
    cands = candidates_of(pool.samples)
    hits, tokens = [], []
    for order in permutations(range(pool.n), k):
        drawn, i = early_stop_vote.replay(
            spec.config, [cands[j] for j in order], k, np.random.default_rng(0)
        )
        hits.append(0.0 if i is None else float(pool.samples[order[i]].correct))
        tokens.append(sum(pool.samples[j].tokens for j in order[:drawn]))
    return float(np.mean(hits)), float(np.mean(tokens))


def test_random_orders_estimate_the_mean_over_every_order_within_their_standard_error():
    rng = np.random.default_rng(5)
    specs = parse_estimators(RULES, [])
    assert all(s.strategy in ADAPTIVE for s in specs)
    checked = stopped = 0
    for trial in range(4):
        pool = synthetic_pool(rng, 6, pid=f"p{trial}", answers=2 + trial % 2)
        mean_tokens = np.mean([s.tokens for s in pool.samples])
        for spec in specs:
            for k in (1, 3, 6):
                truth, truth_tokens = every_order(spec, pool, k)
                orders = orders_for(6, k, 400, np.random.default_rng([trial, k]))
                acc, var, tokens = adaptive_estimate(spec, pool, orders, np.random.default_rng(0))
                se = math.sqrt(var)
                assert abs(acc - truth) <= 4 * se + 1e-9, (spec.label, k, acc, truth, se)
                # tokens: what it drew, never more than k samples' worth on average
                assert abs(tokens - truth_tokens) <= 0.1 * truth_tokens + 0.5
                assert truth_tokens <= k * mean_tokens + 1e-9
                stopped += truth_tokens < 0.95 * k * mean_tokens
                checked += 1
    assert checked == 4 * len(specs) * 3 and stopped > 0


def test_a_settled_vote_costs_fewer_tokens_in_the_estimate_and_the_same_seed_repeats():
    rng = np.random.default_rng(1)
    # two answers, one of them 90% of the samples: a window of 2 agrees early
    pools = [synthetic_pool(rng, 10, pid=f"p{i}", answers=1) for i in range(3)]
    specs = parse_estimators(["self-consistency", "early-stop-vote[window=2]"], [])
    out = {e.label: e for e in estimate(pools, specs, ks=[10], subsets=50, seed=3)}
    plain, early = out["self-consistency"], out["early-stop-vote[window=2]"]
    assert early.tokens_per_problem < 0.5 * plain.tokens_per_problem
    assert not early.exact and early.scorer_calls_per_problem == 0
    assert estimate(pools, specs, ks=[10], subsets=50, seed=3) == list(out.values())
    assert estimate(pools, specs, ks=[10], subsets=50, seed=4) != list(out.values())


def test_bad_adaptive_estimators_are_clear_errors():
    with pytest.raises(ValueError, match="does not use a scorer"):
        parse_estimators(["early-stop-vote@v"], ["v"])
    with pytest.raises(ValueError, match="window must be >= 1"):
        parse_estimators(["early-stop-vote[window=0]"], [])
    with pytest.raises(ValueError, match="cannot be estimated from a pool"):
        parse_estimators(["answer-convergence"], [])
    with pytest.raises(ValueError, match="a budget from 1 to the 0 samples given, got 3"):
        early_stop_vote.replay(create("early-stop-vote").config, [], 3, None)


class Ordered(TopScripted):
    """Serves one fixed sequence of texts across requests: the k-th sample drawn (over all
    requests) is ``texts[k]``, as a pool's samples taken in a given order."""

    def __init__(self, texts):
        it = iter(texts)
        super().__init__(lambda prefix, i: next(it), logprob=lambda text: -0.1 - len(text) / 100)


def test_live_early_stop_vote_draws_and_picks_what_the_replay_does():
    """For every rule, pool and order: the live strategy fed the pool's samples in that order,
    window by window, draws as many as the replay and answers with the same sample."""
    task = create_task("arithmetic", level=2)
    problems = task.problems(4)
    rng = np.random.default_rng(9)
    checked = settled = 0
    for problem in problems:
        ref = int(problem.reference)
        texts = [
            f"Working{' it out' * int(rng.integers(3))}. The answer is "
            f"{ref + int(rng.choice([0, 0, 1, 2]))}."
            for _ in range(8)
        ]
        pool = asyncio.run(draw_pool(task, problem, 0, PoolConfig(n=8), Ordered(texts), {}))
        assert [s.text for s in pool.samples] == texts
        for label in RULES:
            [spec] = parse_estimators([label], [])
            for order in (tuple(range(8)), tuple(rng.permutation(8).tolist())):
                for k in (3, 8):
                    live = create("early-stop-vote", **_settings(label), answer_kind="number")
                    engine = Ordered([texts[j] for j in order])
                    result = asyncio.run(live.run(problem, engine, None, Budget(n=k)))
                    cands = candidates_of([pool.samples[j] for j in order])
                    drawn, i = early_stop_vote.replay(spec.config, cands[:k], k, None)
                    assert len(result.candidates) == result.trace["samples_drawn"] == drawn
                    assert [c.text for c in result.candidates] == [texts[j] for j in order[:drawn]]
                    assert result.best is not None and i is not None
                    assert result.best.text == texts[order[i]], (label, order, k)
                    checked += 1
                    settled += result.trace["stopped"] == "settled"
    assert checked == 4 * len(RULES) * 4 and 0 < settled < checked


def _settings(label):
    """The settings in a rule label's brackets, as ``ponder`` parses them."""
    body = label.partition("[")[2].rstrip("]")
    return parse_pairs([p for p in body.split(";") if p], "a setting")


@pytest.fixture()
def own_engine(small_model):
    """An engine of this test's own: the session's shared engine keeps the history of
    requests the other real-model tests were written against (its numerics depend on
    what ran before in it)."""
    from ponder.engines.llamacpp.engine import LlamaCppEngine

    eng = LlamaCppEngine(small_model, n_ctx=4096, n_parallel=16, seed=0)
    yield eng
    eng.close()


def test_live_early_stop_vote_on_the_small_model_picks_what_the_replay_picks(own_engine):
    """The real engine: the live strategy's windows, stored as a pool in drawing order,
    replay to the same number drawn and the same answer."""
    engine = own_engine
    task = create_task("arithmetic", level=1)
    config = PoolConfig(n=6, max_tokens=32)
    for problem in task.problems(2):
        for label in ("early-stop-vote[window=2]", "early-stop-vote[window=1;rule=beta]"):
            recording = Recording(engine)
            live = create(
                "early-stop-vote",
                **_settings(label),
                answer_kind="number",
                max_tokens=32,
                temperature=0.7,
                seed=0,
            )
            result = asyncio.run(live.run(problem, recording, None, Budget(n=6)))
            drawn = [c for window in recording.outputs for c in window]
            assert len(drawn) == result.trace["samples_drawn"]
            pool: PoolRecord = asyncio.run(pool_record(task, problem, 0, config, drawn, {}))
            [spec] = parse_estimators([label], [])
            cands = candidates_of(pool.samples)
            # the replay over what was drawn stops where the live run stopped (or at its end)
            n, i = early_stop_vote.replay(spec.config, cands, len(cands), None)
            assert n == len(drawn)
            assert (result.best.text if result.best else None) == (
                None if i is None else pool.samples[i].text
            ), (label, problem.id)
