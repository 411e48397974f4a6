"""Fitting recipes from pools: the offline simulation equals the live ``auto`` run on the
same samples, the fit finds a known optimum on a synthetic pool, and ``ponder tune`` runs
end to end on the small model."""

import asyncio
import json

import pytest
from scripted import ScriptedEngine

from ponder.evals import Store
from ponder.evals.pool import PoolConfig, run_pool
from ponder.evals.store import PoolRecord, SampleRecord
from ponder.evals.tune import (
    Point,
    best_fixed,
    choose,
    fixed_points,
    frontier,
    recipe_grid,
    simulate,
    split,
    tune,
)
from ponder.strategies import create
from ponder.strategies.recipes import from_dict, load
from ponder.tasks import create_task
from ponder.types import Budget

RECIPE = {
    "stages": [
        {"draw": 2, "stop_if": {"agreement": 1.0}},
        {"draw": 4, "stop_if": {"margin": 0.5}},
        {"draw": 2},
    ]
}
OFFSETS = {0: 0, 1: 2, 2: 6}


def pool_script(refs):
    """Pool sample i of a problem: right for some (problem, i), else one of two wrong answers,
    with lengths that differ."""

    def script(prefix, i):
        ref = refs[prefix]
        h = (ref * 7 + i * 13 + i * i) % 11
        answer = ref if h < 5 else ref + 1 + h % 2
        return "Think" + " step" * (h % 3) + f". The answer is {answer}."

    return script


class StageEngine(ScriptedEngine):
    """What live ``auto`` sees: stage j (seed j) draws pool samples ``OFFSETS[j] + t``."""

    def _one(self, r):
        offset = OFFSETS[r.params.seed]
        inner = self._script
        self.script = lambda prefix, t: inner(prefix, offset + t)
        try:
            return super()._one(r)
        finally:
            self.script = inner

    def __init__(self, script):
        super().__init__(script)
        self._script = script


def test_offline_simulation_equals_the_live_auto_run_on_the_same_samples(tmp_path):
    task = create_task("arithmetic", level=2)
    problems = task.problems(12)
    refs = {p.messages[0]["content"]: int(p.reference) for p in problems}
    db = tmp_path / "runs.sqlite"
    summary = run_pool(
        task, PoolConfig(n=8), [0], 12, db, ScriptedEngine(pool_script(refs)), progress=False
    )
    with Store(db) as store:
        pools = store.pools(summary.run_id)
    recipe = from_dict(RECIPE)
    sim = simulate(recipe, pools)
    auto = create("auto", recipe=RECIPE, seed=0)
    live_acc, live_tokens, stages = {}, [], [0, 0, 0]
    for p in problems:
        r = asyncio.run(auto.run(p, StageEngine(pool_script(refs)), None, Budget(n=8)))
        live_acc[p.id] = float(asyncio.run(task.grade(p, r)))
        live_tokens.append(r.usage.tokens_generated)
        stages[r.trace["stopped_at"]] += 1
    assert sim.per_problem == live_acc
    assert sim.tokens == pytest.approx(sum(live_tokens) / len(live_tokens))
    assert sim.stages == pytest.approx(tuple(s / len(problems) for s in stages))
    assert 0 < stages[0] < len(problems), "the script should make some problems escalate"


def sample(answer, correct, tokens=10):
    return SampleRecord(f"The answer is {answer}", answer, tokens, "stop", correct, {}, {})


def synthetic(easy=6, hard=4):
    """Easy problems: all 8 samples agree and are right. Hard ones: the first two disagree,
    5 of 8 are right: the majority of 8 is right, the first two tie and the tie goes to
    the first (wrong) answer."""
    pools = []
    for i in range(easy):
        pools.append(
            PoolRecord("r", f"e{i}", 0, "1", tuple(sample("1", True) for _ in range(8)), {}, {}, 0)
        )
    hard_answers = ["2", "1", "1", "3", "1", "2", "1", "1"]
    for i in range(hard):
        samples = tuple(sample(a, a == "1") for a in hard_answers)
        pools.append(PoolRecord("r", f"h{i}", 0, "1", samples, {}, {}, 0))
    return pools


def test_the_fit_finds_the_known_optimum_on_a_synthetic_pool():
    pools = synthetic()
    ids = sorted({p.problem_id for p in pools})
    stop_early = from_dict({"stages": [{"draw": 2, "stop_if": {"agreement": 1.0}}, {"draw": 6}]})
    never = from_dict({"stages": [{"draw": 2}, {"draw": 6}]})
    loose = from_dict({"stages": [{"draw": 2, "stop_if": {"agreement": 0.5}}, {"draw": 6}]})
    t = tune(pools, ids, [], recipes=[never, stop_early, loose])
    assert t.best_fixed.accuracy == 1.0 and t.best_fixed.tokens == 80
    assert t.chosen.recipe == stop_early
    assert t.chosen.accuracy == 1.0 and t.chosen.tokens == (6 * 20 + 4 * 80) / 10
    assert t.chosen.stages == (0.6, 0.4)
    # Under 30 tokens per problem only the loose recipe fits (it stops at 2 samples always).
    t = tune(pools, ids, [], max_tokens_per_problem=30, recipes=[never, stop_early, loose])
    assert t.chosen.recipe == loose and t.chosen.tokens == 20
    assert t.chosen.accuracy == pytest.approx(0.6)
    with pytest.raises(ValueError, match="no recipe fits 10 tokens"):
        tune(pools, ids, [], max_tokens_per_problem=10, recipes=[never])


def test_tune_on_the_full_grid_reaches_the_best_fixed_accuracy_for_less_and_reports_held_out():
    pools = synthetic(12, 8)
    dev, held = split([p.problem_id for p in pools], 0.5, seed=1)
    assert len(dev) == 10 and not set(dev) & set(held)
    t = tune(pools, dev, held)
    assert t.chosen.accuracy >= t.best_fixed.accuracy
    assert t.chosen.tokens < t.best_fixed.tokens
    assert t.held_recipe is not None and t.held_recipe.problems == 10
    assert t.held_fixed is not None and t.held_fixed.label == t.best_fixed.label
    lo, hi = t.held_recipe.wilson
    assert lo <= t.held_recipe.accuracy <= hi
    assert t.chosen in t.dev_points and t.frontier[0].tokens == min(p.tokens for p in t.dev_points)


def test_frontier_choose_and_split_rules():
    pts = [
        Point("a", "fixed", 0.5, 10, 4, (0, 1)),
        Point("b", "fixed", 0.4, 20, 4, (0, 1)),
        Point("c", "recipe", 0.7, 15, 4, (0, 1)),
        Point("d", "recipe", 0.7, 30, 4, (0, 1)),
        Point("e", "recipe", 0.9, 40, 4, (0, 1)),
    ]
    assert [p.label for p in frontier(pts)] == ["a", "c", "e"]
    assert best_fixed(pts).label == "a"
    recipes = pts[2:]
    assert choose(recipes, target=0.7).label == "c"
    assert choose(recipes, target=0.95).label == "e"
    assert choose(recipes, max_tokens=35).label == "c"
    assert split(["x", "y", "z", "w"], 0.5, 3) == split(["w", "z", "y", "x"], 0.5, 3)
    with pytest.raises(ValueError, match="dev fraction"):
        split(["x", "y"], 1.0)


def test_grid_recipes_fit_the_pool_and_the_fixed_points_cover_every_rule():
    grid = recipe_grid(8, ["judge"])
    assert grid and all(r.total_draws <= 8 for r in grid)
    assert {r.final for r in grid} == {"majority", "best-of-n", "weighted-best-of-n"}
    assert len({r.as_dict().__repr__() for r in grid}) == len(grid)
    labels = {p.label for p in fixed_points(synthetic())}
    assert {"self-consistency@1", "self-consistency@8", "sample@4"} <= labels
    with pytest.raises(ValueError, match="the recipe draws 16 samples; the pools hold 8"):
        simulate(from_dict({"stages": [{"draw": 16}]}), synthetic())


def test_ponder_tune_end_to_end_on_the_small_model_then_reuses_its_pools(
    tmp_path, small_model, capsys
):
    from ponder.cli import main

    db, out = tmp_path / "runs.sqlite", tmp_path / "out"
    common = ["--model", small_model, "--limit", "4", "--pool", "2", "--max-tokens", "16"]
    common += ["--top-logprobs", "5", "--n-ctx", "2048", "--db", str(db), "--subsets", "20"]
    assert main(["tune", "arithmetic", *common, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "(4 pools of 2; 0 reused, 4 drawn)" in text
    assert "development problems: 2; held-back problems: 2" in text
    assert "held-back split (never seen by the fit):" in text
    recipe = load(out / "recipe.json")
    assert recipe.total_draws <= 2 and recipe.about["task"] == "arithmetic"
    report = json.loads((out / "report.json").read_text())
    assert len(report["dev_problems"]) == 2 and report["held_recipe"]["problems"] == 2
    lo, hi = report["held_recipe"]["wilson"]
    assert lo <= report["held_recipe"]["accuracy"] <= hi
    assert (out / "frontier.png").read_bytes()[:4] == b"\x89PNG"
    again = tmp_path / "again"
    args = ["tune", "arithmetic", *common, "--recipe", str(out / "recipe.json")]
    assert main([*args, "--out", str(again)]) == 0
    text = capsys.readouterr().out
    assert "(4 pools of 2; 4 reused, 0 drawn)" in text
    assert "objective: none: the recipe was given" in text and not (again / "recipe.json").exists()
    bad = tmp_path / "big.json"
    bad.write_text(json.dumps({"stages": [{"draw": 16}]}))
    assert main([*args[:-1], str(bad), "--out", str(again)]) == 2
    assert "the recipe draws 16 samples; --pool is 2" in capsys.readouterr().err
