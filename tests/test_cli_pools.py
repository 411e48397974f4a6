"""What ``ponder eval --pool`` and ``ponder tune`` share: the pool options read from the
command line, and pools drawn on a scripted engine with them."""

import argparse

from scripted import ScriptedEngine

from ponder import models
from ponder.cli.pools import draw_pools, pool_scorer_names, recorded_model
from ponder.evals import Store
from ponder.evals.pool import PoolConfig
from ponder.tasks import create_task


def options(**kw):
    base = {"model": None, "engine": "llamacpp", "pool_scorers": "", "seeds": 1, "limit": 0}
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
