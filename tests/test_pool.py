"""Sample pools: drawing and storing them, estimating every sampling strategy at every k from
them, and the live strategies picking exactly what the pool path picks."""

import asyncio
import math
import zlib
from dataclasses import replace
from itertools import combinations

import numpy as np
import pytest
from scripted import ScriptedEngine

from ponder.evals import Store
from ponder.evals.estimators import (
    best_of_n_exact,
    candidates_of,
    default_estimators,
    estimate,
    parse_estimators,
    picker,
    pool_estimate,
    subsets_for,
)
from ponder.evals.metrics import pass_at_k
from ponder.evals.pool import PoolConfig, pool_record, run_pool
from ponder.evals.runner import _config_dict
from ponder.evals.store import PoolRecord, SampleRecord
from ponder.scoring import scorer as make_scorer
from ponder.strategies import create
from ponder.strategies.selection import ballots
from ponder.tasks import create_task
from ponder.types import Budget, TokenLogprob

N = 8


def _h(*parts):
    return zlib.crc32("|".join(map(str, parts)).encode())


class TopScripted(ScriptedEngine):
    """The scripted engine with two top log-probabilities at every token (for DeepConf)."""

    def _one(self, r):
        out = []
        for c in super()._one(r):
            if c.logprobs and r.params.top_logprobs:
                lps = tuple(
                    TokenLogprob(t.token, t.logprob, ((t.token, t.logprob), ("~", -1.0 - j % 3)))
                    for j, t in enumerate(c.logprobs)
                )
                c = replace(c, logprobs=lps)
            out.append(c)
        return out


def make_engine(task, count):
    """Sample i of a problem answers right about 40% of the time, else one of two wrong
    answers; texts differ in length and log-probability so that every rule's ties matter."""
    refs = {p.messages[0]["content"]: int(p.reference) for p in task.problems(count)}

    def script(prefix, i):
        ref = refs[prefix]
        h = _h(prefix, i)
        answer = ref if h % 5 < 2 else ref + 1 + h % 2
        return "Let me think" + " step" * (h % 4) + f". The answer is {answer}."

    return TopScripted(script, logprob=lambda text: -0.1 - (_h(text) % 7) / 10)


def verifier(problem, text):
    return (_h(problem.id, text) % 10) / 10


def draw(tmp_path, count=6, seeds=2, n=N):
    task = create_task("arithmetic", level=2)
    engine = make_engine(task, count)
    scorers = {"v": make_scorer(verifier, name="v")}
    db = tmp_path / "runs.sqlite"
    summary = run_pool(task, PoolConfig(n=n), seeds, count, db, engine, scorers, progress=False)
    return task, engine, scorers, db, summary


def test_pools_are_stored_with_every_statistic_and_resume(tmp_path):
    task, engine, scorers, db, s = draw(tmp_path)
    assert (s.pools_total, s.pools_run, s.pools_failed) == (12, 12, 0)
    # one engine request of n samples per pool
    assert len(engine.requests) == 12 and all(r.n == N for r in engine.requests)
    with Store(db) as store:
        [run] = store.runs()
        pools = store.pools(run["run_id"])
    assert run["config"]["mode"] == "pool" and run["config"]["pool"]["n"] == N
    assert len(pools) == 12 and all(p.n == N for p in pools)
    problems = {p.id: p for p in task.problems(6)}
    for pool in pools:
        problem = problems[pool.problem_id]
        for sample in pool.samples:
            assert sample.correct == (sample.answer == problem.reference)
            assert sample.scores == {"v": verifier(problem, sample.text)}
            assert sample.tokens == len(sample.text.split())
            assert math.isclose(
                sample.stats["log_weight_sum"], sample.tokens * sample.stats["mean_logprob"]
            )
            assert set(sample.stats["confidence"]) == {"lowest", "bottom10", "tail", "mean"}
        assert pool.usage["tokens_generated"] == sum(x.tokens for x in pool.samples)
        assert pool.scorer_usage["v"]["scorer_calls"] == N
    again = run_pool(task, PoolConfig(n=N), 2, 6, db, engine, scorers, progress=False)
    assert (again.pools_already_done, again.pools_run) == (12, 0)
    assert len(engine.requests) == 12


def synthetic_pool(rng, n, pid="p", seed=0, answers=4):
    """A random pool: answers from a small set (so votes tie and clusters form), random
    lengths, log-probs, scores (with ties) and confidences."""
    samples = []
    for i in range(n):
        answer = str(int(rng.integers(answers)))
        tokens = int(rng.integers(3, 9))
        lp = -float(rng.integers(1, 6)) / 10
        conf = float(rng.integers(1, 9))
        samples.append(
            SampleRecord(
                text=f"s{i} answer {answer} " + "x " * tokens,
                answer=answer if rng.random() > 0.1 else None,
                tokens=tokens,
                finish_reason="stop",
                correct=answer == "0",
                stats={
                    "mean_logprob": lp,
                    "log_weight_mean": lp,
                    "log_weight_sum": lp * tokens,
                    "confidence": {
                        k: conf + j for j, k in enumerate(("lowest", "bottom10", "tail", "mean"))
                    },
                },
                scores={"v": float(rng.integers(0, 5)) / 4},
            )
        )
    return PoolRecord("r", pid, seed, "0", tuple(samples), {"tokens_generated": 0}, {}, 0.0)


def brute_force(spec, pool, k):
    """The mean over every k-subset of the correctness of the rule's pick."""
    pick = picker(spec)
    cands = candidates_of(pool.samples)
    hits = []
    for subset in combinations(range(pool.n), k):
        i = pick([cands[j] for j in subset], [pool.samples[j] for j in subset])
        hits.append(0.0 if i is None else float(pool.samples[subset[i]].correct))
    return float(np.mean(hits))


def test_exact_estimators_equal_brute_force_enumeration():
    rng = np.random.default_rng(7)
    specs = default_estimators(["v"])
    for trial in range(6):
        pool = synthetic_pool(rng, 7, pid=f"p{trial}")
        correct = sum(s.correct for s in pool.samples)
        for k in range(1, 8):
            subs, exact = subsets_for(7, k, 10_000, rng)
            assert exact and len(subs) == math.comb(7, k)
            for spec in specs:
                value, var, ex = pool_estimate(spec, pool, k, subs, exact)
                if spec.strategy == "coverage":
                    truth = pass_at_k(7, correct, k)
                    assert truth == pytest.approx(brute_force_coverage(pool, k))
                else:
                    truth = brute_force(spec, pool, k)
                assert ex and var == 0.0
                assert value == pytest.approx(truth, abs=1e-12), (spec.label, k)


def brute_force_coverage(pool, k):
    hits = [
        any(pool.samples[j].correct for j in subset) for subset in combinations(range(pool.n), k)
    ]
    return float(np.mean(hits))


def test_best_of_n_closed_form_equals_enumeration_with_tied_scores():
    rng = np.random.default_rng(3)
    for _ in range(20):
        pool = synthetic_pool(rng, 9)
        cands = candidates_of(pool.samples)
        scores = [s.scores["v"] for s in pool.samples]
        correct = [s.correct for s in pool.samples]
        [spec] = parse_estimators(["best-of-n"], ["v"])
        for k in range(1, 10):
            assert best_of_n_exact(cands, scores, correct, k) == pytest.approx(
                brute_force(spec, pool, k), abs=1e-12
            )


def test_sampled_subsets_estimate_the_enumeration_within_their_standard_error():
    rng = np.random.default_rng(11)
    pools = [synthetic_pool(rng, 12, pid=f"p{i}") for i in range(8)]
    # rpc's Weibull fit costs ~0.1 s a subset: its estimates are checked exactly above;
    # here rpc runs with quantile pruning
    specs = [
        s for s in default_estimators(["v"]) if s.strategy not in ("coverage", "best-of-n", "rpc")
    ] + parse_estimators(["rpc[pruning=quantile]"], ["v"])
    estimates = estimate(pools, specs, ks=[4, 6], subsets=300, seed=1)
    for e in estimates:
        assert not e.exact and e.se > 0  # C(12, 4) = 495 > 300 subsets
        spec = next(s for s in specs if s.label == e.label)
        truth = np.mean([brute_force(spec, p, e.k) for p in pools])
        assert abs(e.accuracy - truth) <= 4 * e.se + 1e-9, (e.label, e.k, e.accuracy, truth, e.se)
    # the same seed gives the same estimate
    assert estimate(pools, specs[:2], ks=[4], subsets=300, seed=1) == [
        e for e in estimates if e.k == 4 and e.label in {s.label for s in specs[:2]}
    ]


def test_estimate_costs_and_exactness():
    rng = np.random.default_rng(5)
    pools = [synthetic_pool(rng, 8, pid=f"p{i}", seed=s) for i in range(3) for s in range(2)]
    [cov, sc, bon] = estimate(
        pools, parse_estimators(["coverage", "self-consistency", "best-of-n"], ["v"]), ks=[2]
    )
    mean_tokens = np.mean([np.mean([x.tokens for x in p.samples]) for p in pools])
    assert cov.tokens_per_problem == pytest.approx(2 * mean_tokens)
    assert (cov.exact, sc.exact, bon.exact) == (True, True, True)  # C(8, 2) = 28 <= 200
    assert bon.scorer_calls_per_problem == 2 and sc.scorer_calls_per_problem == 0
    assert cov.problems == 3 and cov.wilson[0] <= cov.accuracy <= cov.wilson[1]


def test_bad_estimator_specs_are_clear_errors():
    with pytest.raises(ValueError, match="cannot be estimated from a pool"):
        parse_estimators(["beam-search"], [])
    with pytest.raises(ValueError, match="needs a scorer"):
        parse_estimators(["best-of-n"], [])
    with pytest.raises(ValueError, match="no scorer 'judge'"):
        parse_estimators(["best-of-n@judge"], ["v"])
    with pytest.raises(ValueError, match="offline only"):
        parse_estimators(["confidence-vote[mode=online]"], [])
    labels = [s.label for s in parse_estimators(["best-of-n", "rpc"], ["a", "b"])]
    assert labels == ["best-of-n@a", "best-of-n@b", "rpc"]


LIVE = [
    ("sample", {}, None),
    ("sample", {}, "v"),
    ("self-consistency", {}, None),
    ("self-consistency", {"unfinished": "drop"}, None),
    ("weighted-vote", {"weight": "path-probability", "unfinished": "drop"}, None),
    ("rpc", {"unfinished": "drop"}, None),
    ("weighted-vote", {"weight": "path-probability"}, None),
    ("weighted-vote", {"weight": "path-probability", "length_normalize": False}, None),
    ("weighted-vote", {"weight": "score"}, "v"),
    ("rpc", {}, None),
    ("rpc", {"pruning": "quantile"}, None),
    ("best-of-n", {}, "v"),
    ("weighted-best-of-n", {}, "v"),
    ("best-of-majority", {}, "v"),
    ("best-of-majority", {"alpha": 0.4, "top_k": 1}, "v"),
    ("confidence-vote", {"mode": "offline"}, None),
    (
        "confidence-vote",
        {"mode": "offline", "trace_confidence": "bottom10", "keep_percent": 50},
        None,
    ),
]


def live_vs_pool(task, engine, scorers, pools, config, ks, cases=LIVE):
    """For every case, seed and k: the live strategy's pick equals the pool rule's pick
    from the pool's first k samples (the live strategy draws exactly those)."""
    problems = {p.id: p for p in task.problems(len({p.problem_id for p in pools}))}
    sampling = {
        f: getattr(config, f) for f in ("temperature", "top_p", "top_k", "min_p", "max_tokens")
    }
    checked = 0
    for name, settings, scorer in cases:
        label = name + (f"@{scorer}" if scorer else "")
        [spec] = parse_estimators([label], list(scorers) if scorer else [])
        spec = replace(spec, config=create(name, **{**settings, **sampling}).config)
        pick = picker(spec)
        for pool in pools:
            problem = problems[pool.problem_id]
            for k in ks:
                strategy = create(
                    name, **{**settings, **sampling, "seed": pool.seed, "answer_kind": "number"}
                )
                result = asyncio.run(
                    strategy.run(problem, engine, scorers.get(scorer or "", None), Budget(n=k))
                )
                first = pool.samples[:k]
                assert [c.text for c in result.candidates] == [s.text for s in first]
                i = pick(candidates_of(first), first)
                expected = None if i is None else first[i]
                assert (result.best.text if result.best else None) == (
                    expected.text if expected else None
                ), (label, settings, pool.problem_id, pool.seed, k)
                assert result.answer == (expected.answer if expected else None)
                checked += 1
    return checked


def test_live_strategies_pick_exactly_what_the_pool_path_picks(tmp_path):
    task, engine, scorers, db, _ = draw(tmp_path, count=5, seeds=2)
    with Store(db) as store:
        pools = store.pools(store.runs()[0]["run_id"])
    assert live_vs_pool(task, engine, scorers, pools, PoolConfig(n=N), range(1, N + 1)) > 1000


def test_unfinished_samples_drop_out_of_the_vote_live_and_from_the_pool(tmp_path):
    """unfinished=drop (self-consistency, weighted-vote, rpc): samples cut off by the token
    cap cast no vote (unless none ended with an answer). A third of the samples ramble past
    the cap after an early wrong guess; live and pool pick alike, and each rule answers
    better than with every sample voting at k = 4 or 8, and never worse."""
    task = create_task("arithmetic", level=2)
    refs = {p.messages[0]["content"]: int(p.reference) for p in task.problems(6)}

    def script(prefix, i):
        ref, h = refs[prefix], _h(prefix, i)
        if h % 3 == 0:  # an early guess, then past the 12-token cap: cut off
            return f"Maybe {ref + 7} apples." + " Let me count again." * 6
        answer = ref if h % 2 else ref + 1 + h % 2
        return f"The answer is {answer}."

    engine = TopScripted(script, logprob=lambda text: -0.1 - (_h(text) % 7) / 10)
    config = PoolConfig(n=N, max_tokens=12)
    db = tmp_path / "runs.sqlite"
    run_pool(task, config, 2, 6, db, engine, {}, progress=False)
    with Store(db) as store:
        pools = store.pools(store.runs()[0]["run_id"])
    cut = [s for p in pools for s in p.samples if s.finish_reason == "length"]
    assert cut and all(s.answer is not None and not s.correct for s in cut)
    drop = {"unfinished": "drop"}
    cases = [
        ("self-consistency", drop, None),
        ("weighted-vote", {**drop, "weight": "path-probability"}, None),
        ("rpc", drop, None),
        ("rpc", {**drop, "pruning": "quantile"}, None),
    ]
    assert live_vs_pool(task, engine, {}, pools, config, range(1, N + 1), cases) == 4 * 12 * N
    rules = ["self-consistency", "rpc", "weighted-vote[weight=path-probability]"]
    dropped = [
        "self-consistency[unfinished=drop]",
        "rpc[unfinished=drop]",
        "weighted-vote[weight=path-probability;unfinished=drop]",
    ]
    specs = parse_estimators(rules + dropped, [])
    at = {(e.label, e.k): e.accuracy for e in estimate(pools, specs, ks=[4, N], subsets=50)}
    for rule, drop_rule in zip(rules, dropped, strict=True):  # never worse, better somewhere
        assert all(at[(drop_rule, k)] >= at[(rule, k)] for k in (4, N)), at
        assert any(at[(drop_rule, k)] > at[(rule, k)] for k in (4, N)), at
    # every sample cut off: all of them vote again; and a bad setting is a clear error
    only_cut = candidates_of(cut[:3])
    assert [c.answer for c in ballots(only_cut, "drop")] == [c.answer for c in only_cut]
    with pytest.raises(ValueError, match="unfinished must be one of vote, drop"):
        create("self-consistency", unfinished="skip")
    # runs stored before the setting existed keep their ids: it is named only when set
    assert "unfinished" not in _config_dict(create("self-consistency"))
    assert _config_dict(create("self-consistency", unfinished="drop"))["unfinished"] == "drop"


def test_cluster_equals_cluster_answers():
    from ponder.scoring.answers import cluster_answers
    from ponder.strategies.selection import cluster

    rng = np.random.default_rng(2)
    forms = [
        "5",
        "5.0",
        "05",
        "5.00001",
        "1/2",
        "0.5",
        "\\frac{1}{2}",
        "x+1",
        "1+x",
        "7",
        None,
        "$7$",
    ]
    for _ in range(300):
        answers = [forms[int(i)] for i in rng.integers(len(forms), size=int(rng.integers(1, 9)))]
        assert cluster(answers) == cluster_answers(answers)
        assert list(cluster(answers)) == list(cluster_answers(answers))


class Recording:
    """Passes requests to an engine and keeps what each request returned."""

    def __init__(self, engine):
        self.engine = engine
        self.name = engine.name
        self.capabilities = engine.capabilities
        self.outputs = []

    async def generate(self, requests):
        out = await self.engine.generate(requests)
        self.outputs.extend(out)
        return out


def test_live_strategies_on_the_small_model_pick_what_the_pool_picks(engine):
    """The real engine: every live rule's pick from the k samples it drew equals the pool
    rule's pick from those same k samples stored as a pool. (The engine's numerics depend on
    the batch, so a request for k samples need not repeat the first k of a request for n.)"""
    task = create_task("arithmetic", level=1)
    problems = task.problems(2)
    scorers = {"v": make_scorer(verifier, name="v")}
    config = PoolConfig(n=4, max_tokens=32)
    sampling = {
        f: getattr(config, f) for f in ("temperature", "top_p", "top_k", "min_p", "max_tokens")
    }
    runs = []
    for name, settings, scorer in LIVE:
        label = name + (f"@{scorer}" if scorer else "")
        [spec] = parse_estimators([label], list(scorers) if scorer else [])
        spec = replace(spec, config=create(name, **{**settings, **sampling}).config)
        for problem in problems:
            strategy = create(name, **{**settings, **sampling, "answer_kind": "number"})
            runs.append(
                (label, settings, scorer, picker(spec), problem, strategy, Recording(engine))
            )

    async def run_all():
        # all at once, so the engine batches them: the picks compare the samples each
        # live run drew, whatever else shared its batches
        return await asyncio.gather(
            *(
                strategy.run(problem, recording, scorers.get(scorer or ""), Budget(n=4))
                for _, _, scorer, _, problem, strategy, recording in runs
            )
        )

    results = asyncio.run(run_all())
    checked, chose = 0, 0
    for (label, settings, _, pick, problem, _, recording), result in zip(
        runs, results, strict=True
    ):
        [completions] = recording.outputs
        pool = asyncio.run(pool_record(task, problem, 0, config, completions, scorers))
        i = pick(candidates_of(pool.samples), pool.samples)
        assert [c.text for c in result.candidates] == [x.text for x in pool.samples]
        assert (result.best.text if result.best else None) == (
            None if i is None else pool.samples[i].text
        ), (label, settings, problem.id)
        checked += 1
        chose += len({x.answer for x in pool.samples}) > 1
    assert checked == len(LIVE) * 2 and chose > 0
