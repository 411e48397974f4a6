"""Scoring stored pool samples with more scorers (``ponder eval --samples-from RUN``): the
same samples, new scores, nothing generated; checked inputs; the real judge on the small
model through the command line."""

import subprocess
import sys

import pytest
from test_pool import draw

from ponder.evals import Store
from ponder.evals.pool import rescore_pools, source_run
from ponder.evals.report import pool_verifier_quality, text_report
from ponder.evals.results import groups
from ponder.scoring import scorer as make_scorer
from ponder.tasks import create_task


def length_score(problem, text):
    return min(1.0, len(text) / 60)


def test_rescoring_adds_scores_to_the_same_samples_and_generates_nothing(tmp_path):
    task, engine, scorers, db, first = draw(tmp_path, count=4, seeds=2, n=4)
    requests = len(engine.requests)
    new = {"len": make_scorer(length_score, name="len")}
    s = rescore_pools(task, first.run_id, None, db, engine, new, progress=False)
    assert (s.pools_total, s.pools_run, s.pools_failed) == (8, 8, 0)
    assert len(engine.requests) == requests  # nothing drawn
    with Store(db) as store:
        old = {p.key: p for p in store.pools(first.run_id)}
        again = {p.key: p for p in store.pools(s.run_id)}
        run = source_run(store, s.run_id)
        source = source_run(store, first.run_id)
    assert run["config"]["samples_from"] == first.run_id
    assert run["config"]["scorers"] == {"len": {}, "v": {}}
    assert run["config"]["pool"] == source["config"]["pool"]
    assert again.keys() == old.keys()
    for key, pool in again.items():
        before = old[key]
        assert pool.usage == before.usage and pool.scorer_usage["v"] == before.scorer_usage["v"]
        assert pool.scorer_usage["len"]["scorer_calls"] == 4
        for a, b in zip(pool.samples, before.samples, strict=True):
            assert (a.text, a.answer, a.tokens, a.correct, a.stats) == (
                b.text,
                b.answer,
                b.tokens,
                b.correct,
                b.stats,
            )
            assert a.scores == {"v": b.scores["v"], "len": length_score(None, a.text)}
    # resumes: everything is done
    s2 = rescore_pools(task, first.run_id, None, db, engine, new, progress=False)
    assert (s2.run_id, s2.pools_already_done, s2.pools_run) == (s.run_id, 8, 0)
    # a scorer of the same name replaces the source's scores, in a run of its own
    flat = {"v": make_scorer(lambda p, t: 0.5, name="v")}
    s3 = rescore_pools(task, first.run_id, 2, db, engine, flat, progress=False)
    assert s3.run_id not in (s.run_id, first.run_id) and s3.pools_total == 4  # 2 problems
    with Store(db) as store:
        pools = store.pools(s3.run_id)
        # the results page keeps the three runs' pools apart (other scorers)
        [group] = groups(store)
        report = text_report(store)
    assert all(x.scores == {"v": 0.5} for p in pools for x in p.samples)
    assert f"{s3.run_id}: task arithmetic" in report
    assert f"scorers v (the samples of run {first.run_id})" in report
    assert len(group.pools) == 3
    assert sum(bool(c.get("samples_from")) for c in group.pool_configs.values()) == 2
    assert pool_verifier_quality(pools)["v"]["auroc"] == 0.5


def test_rescoring_checks_its_source_and_task(tmp_path):
    task, engine, scorers, db, first = draw(tmp_path, count=2, seeds=1, n=2)
    new = {"len": make_scorer(length_score, name="len")}
    with pytest.raises(ValueError, match=f"no pool run 'nosuch'.*its pool runs: {first.run_id}"):
        rescore_pools(task, "nosuch", None, db, engine, new, progress=False)
    other = create_task("arithmetic", level=3)
    with pytest.raises(ValueError, match="that run's problems are .*level.*2.*this command's"):
        rescore_pools(other, first.run_id, None, db, engine, new, progress=False)
    with pytest.raises(ValueError, match="needs at least one scorer"):
        rescore_pools(task, first.run_id, None, db, engine, {}, progress=False)
    with pytest.raises(ValueError, match="pool scorer 'judge'"):
        rescore_pools(
            task,
            first.run_id,
            None,
            db,
            engine,
            ["judge"],
            progress=False,
            scorer_options={"judge": {"nosuch": 1}},
        )


def test_a_failing_scorer_is_recorded_and_the_rest_are_scored(tmp_path):
    task, engine, scorers, db, first = draw(tmp_path, count=3, seeds=1, n=2)
    bad_id = task.problems(1)[0].id

    def flaky(problem, text):
        if problem.id == bad_id:
            raise ValueError("no score for this one")
        return 1.0

    s = rescore_pools(
        task, first.run_id, None, db, engine, {"f": make_scorer(flaky, name="f")}, progress=False
    )
    assert (s.pools_run, s.pools_failed) == (2, 1) and bad_id in s.failures[0]
    with Store(db) as store:
        assert len(store.pools(s.run_id)) == 2 and store.error_count(s.run_id) == 1


def ponder(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "ponder.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def test_cli_checks_before_any_model_loads(tmp_path):
    db = str(tmp_path / "r.sqlite")
    p = ponder(
        "eval",
        "arithmetic",
        "--samples-from",
        "x",
        "--pool",
        "4",
        "--pool-scorers",
        "judge",
        "--db",
        db,
    )
    assert p.returncode == 2 and "drop --pool" in p.stderr, p.stderr
    p = ponder("eval", "arithmetic", "--samples-from", "x", "--db", db)
    assert p.returncode == 2 and "needs --pool-scorers" in p.stderr
    p = ponder("eval", "arithmetic", "--samples-from", "x", "--pool-scorers", "judge", "--db", db)
    assert p.returncode == 2 and "no results database" in p.stderr


def test_the_judge_inline_scores_a_real_pool_on_the_small_model(tmp_path, small_model):
    """The command line end to end on the real engine: a pool drawn, then its samples judged
    inline, the same texts with the judge's scores, nothing drawn again."""
    db = str(tmp_path / "r.sqlite")
    common = ["--limit", "2", "--model", small_model, "--db", db]
    p = ponder("eval", "arithmetic", "--level", "1", "--pool", "3", "--max-tokens", "24", *common)
    assert p.returncode == 0, p.stderr
    source = p.stdout.split()[1].rstrip(":")
    p = ponder(
        "eval",
        "arithmetic",
        "--level",
        "1",
        "--samples-from",
        source,
        "--pool-scorers",
        "judge",
        "--scorer-set",
        "inline=true",
        *common,
    )
    assert p.returncode == 0, p.stderr
    assert "2 pools scored" in p.stdout and f"the samples of run {source}" in p.stdout
    rescored = p.stdout.split()[1].rstrip(":")
    with Store(db) as store:
        before, after = store.pools(source), store.pools(rescored)
        config = source_run(store, rescored)["config"]
    assert config["scorers"] == {"judge": {"inline": True}}
    assert [x.text for p in before for x in p.samples] == [x.text for p in after for x in p.samples]
    scores = [x.scores["judge"] for p in after for x in p.samples]
    assert len(scores) == 6 and all(0.0 <= v <= 1.0 for v in scores)
    assert all(p.usage == q.usage for p, q in zip(before, after, strict=True))
    assert all(p.scorer_usage["judge"]["scorer_calls"] == 3 for p in after)
