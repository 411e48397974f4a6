"""What ``ponder eval --pool`` and ``ponder tune`` share: the pool options read from the
command line, and pools drawn on a scripted engine with them."""

import argparse

import pytest
from scripted import ScriptedEngine

from ponder import models
from ponder.cli.pools import draw_pools, pool_scorer_names, pool_scorers, recorded_model
from ponder.evals import Store
from ponder.evals.pool import PoolConfig
from ponder.tasks import create_task


def options(**kw):
    base = {"model": None, "engine": "llamacpp", "pool_scorers": "", "seeds": 1, "limit": 0}
    base["scorer_set"] = None
    return argparse.Namespace(**{**base, "concurrency": 2, "task_seed": 0, **kw})


def test_recorded_model_and_pool_scorer_names():
    assert recorded_model(options()) == models.DEFAULT_MODEL
    assert recorded_model(options(engine="openai")) is None
    assert recorded_model(options(model="m", engine="openai")) == "m"
    assert pool_scorer_names(options(pool_scorers=" judge, ,visible-tests ,")) == [
        "judge",
        "visible-tests",
    ]
    assert pool_scorer_names(options()) == []


def test_scorer_options_go_to_the_one_pool_scorer_and_are_never_dropped():
    assert pool_scorers(options(pool_scorers="judge,visible-tests")) == (
        ["judge", "visible-tests"],
        None,
    )
    one = options(pool_scorers="judge", scorer_set=["inline=true"])
    assert pool_scorers(one) == (["judge"], {"judge": {"inline": True}})
    assert pool_scorers(options(scorer_set=["inline=true"]), "judge") == (
        ["judge"],
        {"judge": {"inline": True}},
    )
    with pytest.raises(ValueError, match=r"2 are named \(judge, visible-tests\)"):
        pool_scorers(options(pool_scorers="judge,visible-tests", scorer_set=["inline=true"]))
    with pytest.raises(ValueError, match="none is named"):
        pool_scorers(options(scorer_set=["inline=true"]))
    with pytest.raises(ValueError, match="either --scorer"):
        pool_scorers(options(pool_scorers="judge"), "judge")


def test_a_pool_scorer_option_it_does_not_take_is_a_clear_error(tmp_path):
    task = create_task("arithmetic", level=1)
    args = options(engine="openai", model="scripted-model", limit=1)
    engine = ScriptedEngine(lambda prefix, i: "The answer is 1.")
    with pytest.raises(ValueError, match="pool scorer 'judge'.*nosuch"):
        draw_pools(
            args,
            task,
            PoolConfig(n=2),
            engine,
            tmp_path / "r.sqlite",
            ["judge"],
            {"judge": {"nosuch": 1}},
        )


def test_draw_pools_draws_seeds_times_limit_pools_of_the_task_seeds_problems(tmp_path):
    task = create_task("arithmetic", level=1)
    args = options(engine="openai", model="scripted-model", seeds=2, limit=3, task_seed=5)
    engine = ScriptedEngine(lambda prefix, i: f"Sample {i}. The answer is 1.")
    db = tmp_path / "runs.sqlite"
    summary = draw_pools(args, task, PoolConfig(n=2), engine, db, [])
    assert (summary.pools_total, summary.pools_run, summary.pools_failed) == (6, 6, 0)
    with Store(db) as store:
        pools = store.pools(summary.run_id)
        again = draw_pools(args, task, PoolConfig(n=2), engine, store, [])
        (run,) = store.runs()
    assert {p.problem_id for p in pools} == {p.id for p in task.problems(3, seed=5)}
    assert sorted({p.seed for p in pools}) == [0, 1]
    assert again.run_id == summary.run_id and again.pools_already_done == 6
    assert run["model"] == "scripted-model"
