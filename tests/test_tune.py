"""Fitting recipes from pools: the offline simulation equals the live ``auto`` run on the
same samples, the fit finds a known optimum on a synthetic pool, and ``ponder tune`` runs
end to end on the small model."""

import asyncio
import dataclasses
import json
import math

import numpy as np
import pytest
from scripted import ScriptedEngine

from ponder.evals import Store
from ponder.evals.estimators import default_estimators
from ponder.evals.pool import PoolConfig, run_pool
from ponder.evals.store import PoolRecord, SampleRecord
from ponder.evals.tune import (
    Bootstrap,
    Point,
    best_fixed,
    choose,
    choose_robust,
    confidence_settings,
    first_stage_draws,
    fixed_points,
    frontier,
    recipe_grid,
    resampled_accuracy,
    simulate,
    split,
    tune,
)
from ponder.evals.tune_report import text_report
from ponder.evals.tune_signals import ask_pools
from ponder.evals.tune_splits import split_fits, spread
from ponder.strategies import create
from ponder.strategies.recipes import from_dict, load, more, replay
from ponder.tasks import create_task
from ponder.types import Budget, Candidate, Completion, TokenLogprob, Usage

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


def _pools_of_12(tmp_path, engine_class):
    """12 level-2 arithmetic problems, their references by prompt, and their pools of 8
    drawn from ``engine_class`` on the scripted pool answers."""
    task = create_task("arithmetic", level=2)
    problems = task.problems(12)
    refs = {p.messages[0]["content"]: int(p.reference) for p in problems}
    db = tmp_path / "runs.sqlite"
    summary = run_pool(
        task, PoolConfig(n=8), [0], 12, db, engine_class(pool_script(refs)), progress=False
    )
    with Store(db) as store:
        return task, problems, refs, store.pools(summary.run_id)


def test_offline_simulation_equals_the_live_auto_run_on_the_same_samples(tmp_path):
    task, problems, refs, pools = _pools_of_12(tmp_path, ScriptedEngine)
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
    # Stopping on the verifier's score is tried only where the recipe has that scorer,
    # at every stage but the last.
    scored = [r for r in grid if any("score" in s.stop_if for s in r.stages)]
    assert scored and all(r.scorer == "judge" and r.needs_scorer for r in scored)
    assert all("score" not in r.stages[-1].stop_if for r in grid)
    assert any("score" in r.stages[1].stop_if for r in scored if len(r.stages) == 3)
    assert not any("score" in s.stop_if for r in recipe_grid(8) for s in r.stages)
    labels = {p.label for p in fixed_points(synthetic())}
    assert {"self-consistency@1", "self-consistency@8", "sample@4"} <= labels
    with pytest.raises(ValueError, match="the recipe draws 16 samples; the pools hold 8"):
        simulate(from_dict({"stages": [{"draw": 16}]}), synthetic())


def test_the_grid_tries_giving_up_on_truncated_samples_at_every_stage_but_the_last():
    grid = recipe_grid(8)
    assert all(not r.stages[-1].give_up_if for r in grid)
    rules = {tuple(s.give_up_if.items()) for r in grid for s in r.stages}
    assert rules == {(), (("truncated", 0.5),), (("truncated", 1.0),)}
    # After one sample in all, 0.5 and 1.0 are the same rule: it is tried once.
    ones = {tuple(r.stages[0].give_up_if.values()) for r in grid if r.stages[0].draw == 1}
    assert ones == {(), (0.5,)}
    assert len({repr(r.as_dict()) for r in grid}) == len(grid)


def test_giving_up_on_truncated_pools_saves_their_tokens_at_the_same_accuracy():
    """6 easy problems (8 agreeing right samples of 10 tokens) and 4 hopeless ones (8
    samples that ran out at 50 tokens, all wrong): giving up after 2 loses nothing."""
    pools = synthetic(6, 0)
    cut = tuple(SampleRecord("so so", str(i % 3), 50, "length", False, {}, {}) for i in range(8))
    pools += [PoolRecord("r", f"h{i}", 0, "1", cut, {}, {}, 0) for i in range(4)]
    never = from_dict({"stages": [{"draw": 2}, {"draw": 6}]})
    quit_ = from_dict({"stages": [{"draw": 2, "give_up_if": {"truncated": 1.0}}, {"draw": 6}]})
    a, b = simulate(never, pools), simulate(quit_, pools)
    assert a.accuracy == b.accuracy == 0.6
    assert a.tokens == (6 * 80 + 4 * 400) / 10 and b.tokens == (6 * 80 + 4 * 100) / 10
    assert b.stages == (0.4, 0.6)


def test_ponder_tune_end_to_end_on_the_small_model_then_reuses_its_pools(
    tmp_path, small_model, capsys
):
    from ponder.cli import main

    db, out = tmp_path / "runs.sqlite", tmp_path / "out"
    common = ["--model", small_model, "--levels", "1,2", "--limit", "2", "--pool", "2"]
    common += ["--max-tokens", "16", "--temperatures", "0.5,1.0", "--top-logprobs", "5"]
    common += ["--n-ctx", "2048", "--db", str(db), "--subsets", "20"]
    assert main(["tune", "arithmetic", *common, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "(8 pools of 2; 0 reused, 8 drawn)" in text
    assert "P(yes) asked about 8 samples now (8 tokens generated" in text
    assert "development problems: 2; held-back problems: 2" in text
    assert "held-back split (never seen by the fit):" in text
    assert "of 1000 resamples (required: 80%)" in text
    assert (
        "fit: the recipe is not below" in text or "fit: no recipe qualifies; the closest is" in text
    )
    recipe = load(out / "recipe.json")
    assert recipe.about["fit"] == {
        "rule": "bootstrap",
        "draws": 1000,
        "confidence": 0.8,
        "tolerance": 0.0,
        "seed": 0,
    }
    assert 0 <= recipe.about["fit_statistic"] <= 1
    assert recipe.total_draws <= 2 and recipe.about["task"] == "arithmetic"
    assert recipe.temperature in (0.5, 1.0) and recipe.about["temperatures"] == [0.5, 1.0]
    report = json.loads((out / "report.json").read_text())
    assert len(report["dev_problems"]) == 2 and report["held_recipe"]["problems"] == 2
    assert report["fit"]["rule"] == "bootstrap" and report["max_tokens_per_problem"] is None
    assert report["no_more"] and report["temperatures"] == [0.5, 1.0]
    # Pools at 5 top log-probs store other confidences than live auto's (20): no recipe
    # ends in confidence-vote.
    assert report["confidence_final"] is False
    assert {p["temperature"] for p in report["points"]} == {0.5, 1.0}
    lo, hi = report["held_recipe"]["wilson"]
    assert lo <= report["held_recipe"]["accuracy"] <= hi
    assert (out / "frontier.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / "report.md").read_text()
    assert md.startswith("### ponder tune arithmetic\n") and "--temperatures 0.5,1" in md
    assert "| stage | draw (total) | temperature | stop if |" in md and "95% Wilson" in md
    assert "**Held-back split (never seen by the fit)**" in md and "![" in md
    page = (out / "report.html").read_text()
    assert '<img class="plot"' in page and "Every candidate (" in page
    assert page.count("<tr>") > len(report["points"])
    # The same command again draws nothing and asks nothing: every pool and P(yes) is stored.
    assert main(["tune", "arithmetic", *common, "--out", str(tmp_path / "same")]) == 0
    text = capsys.readouterr().out
    assert "(8 pools of 2; 8 reused, 0 drawn)" in text
    assert "P(yes) asked about 0 samples now (0 tokens generated, 0 prompt tokens" in text
    assert "computed), 8 found stored" in text
    assert load(tmp_path / "same" / "recipe.json") == recipe
    # A smaller --limit tunes on those problems' pools only, not on all the run holds.
    limit = common.index("--limit") + 1
    one = [*common[:limit], "1", *common[limit + 1 :], "--out", str(tmp_path / "one")]
    assert main(["tune", "arithmetic", *one]) == 0
    assert "(4 pools of 2; 4 reused, 0 drawn)" in capsys.readouterr().out
    plain = tmp_path / "plain"
    fit = ["--fit", "plain", "--fit-seed", "3"]
    assert main(["tune", "arithmetic", *common, *fit, "--out", str(plain)]) == 0
    assert "\nfit: " not in capsys.readouterr().out
    about = load(plain / "recipe.json").about
    assert about["fit"] == {"rule": "plain"} and about["fit_statistic"] is None
    assert "--fit plain" in about["command"]
    fit = ["--fit-confidence", "0.9", "--fit-tolerance", "0.02", "--fit-draws", "50"]
    fit += ["--split-seeds", "3"]
    assert main(["tune", "arithmetic", *common, *fit, "--out", str(plain)]) == 0
    text = capsys.readouterr().out
    assert "in at least 90% of bootstrap resamples" in text
    assert "stability: the fits at 3 random splits (split seeds 0–2):" in text
    assert "  fit: bootstrap; held-back accuracy, mean (min–max): " in text
    about = load(plain / "recipe.json").about
    assert "--fit-confidence 0.9 --fit-tolerance 0.02 --fit-draws 50" in about["command"]
    assert "--split-seeds 3" in about["command"]
    assert about["fit"]["draws"] == 50 and about["fit"]["tolerance"] == 0.02
    report = json.loads((plain / "report.json").read_text())
    assert [(r["seed"], r["fit"]) for r in report["splits"][:2]] == [(0, "plain"), (0, "bootstrap")]
    assert len(report["splits"]) == 6 and report["split_spread"]["plain"]["splits"] == 3
    assert "**stability: the fits at 3 random splits" in (plain / "report.md").read_text()
    again = tmp_path / "again"
    args = ["tune", "arithmetic", *common, "--recipe", str(out / "recipe.json")]
    assert main([*args, "--out", str(again)]) == 0
    text = capsys.readouterr().out
    assert "(8 pools of 2; 8 reused, 0 drawn)" in text
    assert "objective: none: the recipe was given" in text and not (again / "recipe.json").exists()
    # a given recipe is measured on every problem: no development split, no "fitted" recipe
    assert "given recipe (fitted elsewhere): " in text and "fitted recipe:" not in text
    assert "development split" not in text and "stop here (all problems)" in text
    md = (again / "report.md").read_text()
    assert "**Development split**" not in md and "**All problems (the recipe was fitted" in md
    assert json.loads((again / "report.json").read_text())["recipe_given"] is True
    # A fitted recipe records its cap; assessing it defaults to that cap (the same pools)
    # and refuses another one.
    assert recipe.max_tokens == 16 and "max_tokens=16: " in recipe.describe()
    cap = common.index("--max-tokens")
    uncapped = ["tune", "arithmetic", *common[:cap], *common[cap + 2 :]]
    uncapped += ["--recipe", str(out / "recipe.json"), "--out", str(again)]
    assert main(uncapped) == 0
    assert "(8 pools of 2; 8 reused, 0 drawn)" in capsys.readouterr().out
    assert main([*uncapped, "--max-tokens", "32"]) == 2
    err = capsys.readouterr().err
    assert "the recipe was fitted at --max-tokens 16; assess it at that cap" in err
    bad = tmp_path / "big.json"
    bad.write_text(json.dumps({"stages": [{"draw": 16}]}))
    assert main([*args[:-1], str(bad), "--out", str(again)]) == 2
    assert "the recipe draws 16 samples; --pool is 2" in capsys.readouterr().err


def test_ponder_tune_rejects_bad_sweeps_before_loading_a_model(tmp_path, capsys):
    from ponder.cli import main

    base = ["tune", "arithmetic", "--model", "no-such-model", "--db", str(tmp_path / "x")]
    assert main([*base, "--temperatures", "0.5,0.5"]) == 2
    assert "--temperatures repeats a value" in capsys.readouterr().err
    assert main([*base, "--levels", "1,2", "--level", "3"]) == 2
    assert "either --level or --levels" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--temperatures", "hot"])
    assert "expected numbers like 0.5,0.7,1.0" in capsys.readouterr().err
    assert main([*base, "--fit-confidence", "1.5"]) == 2
    assert "confidence must be in (0, 1), got 1.5 (--fit-confidence)" in capsys.readouterr().err
    assert main([*base, "--fit-tolerance", "5"]) == 2
    assert "a share in [0, 1), e.g. 0.02 for 2 points, got 5.0" in capsys.readouterr().err
    assert main([*base, "--fit-draws", "0"]) == 2
    assert "at least 1 bootstrap draw, got 0 (--fit-draws)" in capsys.readouterr().err
    assert main([*base, "--split-seeds", "-1"]) == 2
    assert "--split-seeds must be >= 0, got -1" in capsys.readouterr().err
    assert main([*base, "--split-seeds", "2", "--recipe", str(tmp_path / "r.json")]) == 2
    assert "--split-seeds re-fits; with --recipe nothing is fitted" in capsys.readouterr().err
    assert main([*base, "--dev-fraction", "1"]) == 2
    assert "--dev-fraction must be in (0, 1), got 1.0" in capsys.readouterr().err
    assert main([*base, "--max-tokens", "0"]) == 2
    assert "--max-tokens must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--fit", "lucky"])
    assert "invalid choice: 'lucky'" in capsys.readouterr().err


# The no_more signal from pools, and pools at several temperatures.

NO_MORE_RECIPE = {
    "stages": [
        {"draw": 2, "stop_if": {"no_more": 0.5}},
        {"draw": 4, "stop_if": {"margin": 0.5}},
        {"draw": 2},
    ]
}


def p_yes_of(text):
    """The scripted model's P(yes) about one sample: low for the short ones."""
    return 0.2 if " step" not in text else 0.7


def answer_question(engine, r):
    """The scripted answer to ``recipes.more``'s question, or None for other requests."""
    if not (isinstance(r.prefix, tuple) and r.prefix[-1]["content"] == more.QUESTION):
        return None
    engine.asked.append(r.prefix[-2]["content"])
    p = p_yes_of(r.prefix[-2]["content"])
    top = (("Yes", math.log(p)), ("No", math.log(1 - p)))
    first = TokenLogprob(*max(top, key=lambda kv: kv[1]), top)
    usage = Usage(tokens_generated=1, prompt_tokens_computed=4, engine_calls=1)
    return [Completion(first.token, 1, "length", usage, (first,), 12)]


class AskingEngine(ScriptedEngine):
    def __init__(self, script):
        super().__init__(script)
        self.asked = []

    def _one(self, r):
        return answer_question(self, r) or super()._one(r)


class AskingStageEngine(StageEngine):
    def __init__(self, script):
        super().__init__(script)
        self.asked = []

    def _one(self, r):
        return answer_question(self, r) or super()._one(r)


def test_offline_simulation_with_no_more_equals_the_live_auto_run(tmp_path):
    task = create_task("arithmetic", level=2)
    problems = task.problems(12)
    refs = {p.messages[0]["content"]: int(p.reference) for p in problems}
    db = tmp_path / "runs.sqlite"
    engine = AskingEngine(pool_script(refs))
    summary = run_pool(task, PoolConfig(n=8), [0], 12, db, engine, progress=False)
    with Store(db) as store:
        asked = ask_pools(
            store, store.pools(summary.run_id), {p.id: p for p in problems}, engine, 2
        )
        assert asked.asked == 24 and asked.cached == 0 and asked.usage.tokens_generated == 24
        pools = store.pools(summary.run_id)
    assert all(
        s.stats["p_yes"] == pytest.approx(p_yes_of(s.text)) for p in pools for s in p.samples[:2]
    )
    assert all("p_yes" not in s.stats for p in pools for s in p.samples[2:])
    recipe = from_dict(NO_MORE_RECIPE)
    sim = simulate(recipe, pools)
    auto = create("auto", recipe=NO_MORE_RECIPE, seed=0)
    live_acc, live_tokens, live_calls, stages = {}, [], [], [0, 0, 0]
    for p in problems:
        r = asyncio.run(auto.run(p, AskingStageEngine(pool_script(refs)), None, Budget(n=8)))
        live_acc[p.id] = float(asyncio.run(task.grade(p, r)))
        live_tokens.append(r.usage.tokens_generated)
        live_calls.append(r.usage.scorer_calls)
        stages[r.trace["stopped_at"]] += 1
    assert sim.per_problem == live_acc
    assert sim.tokens == pytest.approx(sum(live_tokens) / len(live_tokens))
    assert sim.scorer_calls == pytest.approx(sum(live_calls) / len(live_calls)) == sim.asked == 2
    assert sim.stages == pytest.approx(tuple(s / len(problems) for s in stages))
    assert 0 < stages[0] < len(problems), "the script should make some problems escalate"


def test_a_second_pass_over_the_same_pools_generates_nothing(tmp_path):
    task = create_task("arithmetic", level=1)
    problems = task.problems(5)
    refs = {p.messages[0]["content"]: int(p.reference) for p in problems}
    db = tmp_path / "runs.sqlite"
    by_id = {p.id: p for p in problems}
    first = AskingEngine(pool_script(refs))
    run_pool(task, PoolConfig(n=4), [0], 5, db, first, progress=False)
    with Store(db) as store:
        ask_pools(store, store.pools(store.runs()[0]["run_id"]), by_id, first, 4)
    assert len(first.requests) == 5 + 5 * 4
    again = AskingEngine(pool_script(refs))
    summary = run_pool(task, PoolConfig(n=4), [0], 5, db, again, progress=False)
    with Store(db) as store:
        asked = ask_pools(store, store.pools(summary.run_id), by_id, again, 4)
    assert summary.pools_run == 0 and summary.pools_already_done == 5
    assert asked.asked == 0 and asked.cached == 20 and asked.usage == Usage()
    assert again.requests == [] and again.asked == []


def tempered(t, answers, tokens=10):
    """One pool per problem at temperature ``t``: sample i answers ``answers[i]``."""
    return [
        PoolRecord(
            "r" + str(t),
            f"p{i}",
            0,
            "1",
            tuple(sample(a, a == "1", tokens) for a in answers),
            {},
            {},
            0,
        )
        for i in range(10)
    ]


def test_tune_chooses_the_temperature_and_compares_fixed_rules_at_each():
    pools = {
        0.5: tempered(0.5, ["2", "1", "2", "1", "2", "1", "2", "2"]),
        1.0: tempered(1.0, ["1", "1", "1", "1", "1", "1", "1", "1"], tokens=12),
    }
    ids = [f"p{i}" for i in range(10)]
    t = tune(pools, ids[:5], ids[5:])
    assert t.temperatures == (0.5, 1.0)
    labels = {p.label for p in t.dev_points if p.kind == "fixed"}
    assert {"self-consistency@1 T=0.5", "self-consistency@1 T=1"} <= labels
    assert t.chosen.recipe is not None and t.chosen.recipe.temperature == 1.0
    assert t.chosen.accuracy == 1.0 and t.chosen.tokens == 12
    assert t.held_fixed is not None and t.held_fixed.temperature == t.best_fixed.temperature
    assert t.held_fixed.label == t.best_fixed.label and t.held_fixed.problems == 5
    assert t.held_recipe is not None and t.held_recipe.accuracy == 1.0
    grid = recipe_grid(8, [], (0.5, 1.0))
    assert {r.temperature for r in grid} == {0.5, 1.0} and not any(r.asks for r in grid)


def test_a_stage_temperature_reads_the_next_samples_of_that_temperatures_pool():
    def pools_at(t, base):
        return [
            PoolRecord(
                "r",
                "p0",
                0,
                "1",
                tuple(sample(str(i), False, base + i) for i in range(8)),
                {},
                {},
                0,
            )
        ]

    pools = {0.5: pools_at(0.5, 100), 1.0: pools_at(1.0, 200)}
    recipe = from_dict(
        {"temperature": 0.5, "stages": [{"draw": 2}, {"draw": 3, "temperature": 1.0}]}
    )
    point = simulate(recipe, pools)
    assert point.tokens == 100 + 101 + 202 + 203 + 204
    with pytest.raises(ValueError, match="names no temperature; the pools were drawn at several"):
        simulate(from_dict({"stages": [{"draw": 2}]}), pools)
    with pytest.raises(ValueError, match="temperature 0.7; no pools at it"):
        simulate(from_dict({"temperature": 0.7, "stages": [{"draw": 2}]}), pools)


def test_the_grid_reads_no_more_only_when_every_pool_carries_p_yes():
    pools = synthetic(12, 8)
    ids = sorted({p.problem_id for p in pools})
    t = tune(pools, ids[:10], ids[10:])
    assert not t.no_more and not any(p.recipe and p.recipe.asks for p in t.dev_points)
    asked = [
        dataclasses.replace(
            p,
            samples=tuple(
                dataclasses.replace(s, stats={**s.stats, "p_yes": 0.1, "p_yes_tokens": 1})
                if i < first_stage_draws(8)
                else s
                for i, s in enumerate(p.samples)
            ),
        )
        for p in pools
    ]
    assert first_stage_draws(8) == 2 and first_stage_draws(16) == 4
    t = tune(asked, ids[:10], ids[10:])
    assert t.no_more and any(p.recipe and p.recipe.asks for p in t.dev_points)
    rules = [p.recipe.stages[0].stop_if for p in t.dev_points if p.recipe and p.recipe.asks]
    assert {"no_more": 0.8} in rules and {"agreement": 0.6, "no_more": 0.5} in rules
    point = simulate(
        from_dict({"stages": [{"draw": 2, "stop_if": {"no_more": 0.8}}, {"draw": 6}]}), asked
    )
    assert point.stages == (1.0, 0.0) and point.asked == 2 and point.tokens == 20 + 2


# The fit's margin for sampling noise (a paired bootstrap over the development problems).

EVERY = ["1"] * 8
MAJORITY_RIGHT = ["2", "2", "1", "1", "1", "1", "1", "3"]
"""The first two agree on a wrong answer; the majority of 8 is right."""
FIRST_TWO_RIGHT = ["1", "1", "2", "2", "2", "2", "2", "2"]
"""The first two agree on the right answer; the majority of 8 is wrong."""
SPREAD = ["1", "1", "2", "3", "1", "4", "1", "5"]
"""The first two agree on the right answer, the most frequent of 8; fewer samples often miss
it."""


def kinds(prefix, **counts):
    """Pools of 8 (reference "1"): ``counts`` problems of each kind, ids ``prefix + n``."""
    out = []
    for kind, count in counts.items():
        answers = {
            "every": EVERY,
            "majority": MAJORITY_RIGHT,
            "first": FIRST_TWO_RIGHT,
            "spread": SPREAD,
        }[kind]
        for i in range(count):
            samples = tuple(sample(a, a == "1") for a in answers)
            out.append(PoolRecord("r", f"{prefix}{kind}{i}", 0, "1", samples, {}, {}, 0))
    return out


LUCKY = from_dict({"stages": [{"draw": 2, "stop_if": {"agreement": 1.0}}, {"draw": 6}]})
EIGHT = from_dict({"stages": [{"draw": 8}]})


def test_the_bootstrap_fit_refuses_a_recipe_that_is_lucky_on_a_few_development_problems():
    dev = kinds("d", every=3, majority=3, first=3, spread=1)
    held = kinds("h", every=3, majority=5, first=1, spread=1)
    pools = dev + held
    ids = ([p.problem_id for p in dev], [p.problem_id for p in held])
    rules = [s for s in default_estimators([]) if s.strategy == "self-consistency"]
    plain = tune(pools, *ids, recipes=[LUCKY, EIGHT], rules=rules, fit=None)
    assert plain.best_fixed.label == "self-consistency@8" and plain.best_fixed.accuracy == 0.7
    # Stopping on two agreeing samples is right on 3 problems where the vote of 8 is wrong
    # and wrong on 3 where it is right: the same 70%, at a quarter of the tokens.
    assert plain.chosen.recipe == LUCKY and plain.chosen.accuracy == pytest.approx(0.7)
    assert plain.fit is None and plain.fit_statistic is None
    robust = tune(pools, *ids, recipes=[LUCKY, EIGHT], rules=rules)
    assert robust.fit == Bootstrap() and robust.chosen.recipe == EIGHT
    assert robust.fit_statistic == 1.0 and "80% of bootstrap resamples" in robust.objective
    assert (
        "fit: the recipe is not below self-consistency@8 by more than 0.0% in 100.0% of 1000"
        in (text_report(robust))
    )
    low = dataclasses.replace(robust, fit_statistic=0.5)
    assert "fit: no recipe qualifies; the closest is not below" in text_report(low)
    # On the held-back problems the refused recipe was the worse one.
    assert plain.held_recipe is not None and robust.held_recipe is not None
    assert plain.held_recipe.accuracy == pytest.approx(0.5)
    assert robust.held_recipe.accuracy == pytest.approx(0.9)
    # Its share of resamples at least as accurate as the vote of 8 is about a half.
    share = choose_robust([plain.chosen], plain.best_fixed, Bootstrap())[1]
    assert 0.4 < share < 0.8
    # A tolerance of 30 points lets it through; so does a confidence below its share.
    loose = Bootstrap(tolerance=0.3)
    assert tune(pools, *ids, recipes=[LUCKY, EIGHT], rules=rules, fit=loose).chosen.recipe == LUCKY
    low = Bootstrap(confidence=share - 0.01)
    assert tune(pools, *ids, recipes=[LUCKY, EIGHT], rules=rules, fit=low).chosen.recipe == LUCKY


def recipe_point(label, tokens, per_problem):
    acc = float(np.mean(list(per_problem.values())))
    return Point(label, "recipe", acc, tokens, len(per_problem), (0, 1), per_problem=per_problem)


def test_the_bootstrap_fit_is_seeded_and_ranks_recipes_within_a_budget_by_a_low_quantile():
    ids = [f"p{i}" for i in range(10)]
    # Right on 7 problems of 10 and wrong on 3, or 65% right on every problem: the first is
    # more accurate on these problems, the second steadier under resampling.
    spiky = recipe_point("spiky", 50, {i: float(j < 7) for j, i in enumerate(ids)})
    steady = recipe_point("steady", 60, dict.fromkeys(ids, 0.65))
    cheap = recipe_point("cheap", 20, dict.fromkeys(ids, 0.5))
    fit = Bootstrap(draws=300, seed=3)
    acc = resampled_accuracy([spiky, steady], fit)
    assert acc.shape == (2, 300) and (acc == resampled_accuracy([spiky, steady], fit)).all()
    assert not (acc == resampled_accuracy([spiky, steady], Bootstrap(draws=300, seed=4))).all()
    assert acc[0].mean() == pytest.approx(0.7, abs=0.02) and (acc[1] == pytest.approx(0.65))
    assert np.quantile(acc[0], 0.2) < 0.65
    assert choose([spiky, steady, cheap], max_tokens=60) is spiky
    chosen, low = choose_robust([spiky, steady, cheap], spiky, fit, max_tokens=60)
    assert chosen is steady and low == pytest.approx(0.65)
    assert choose_robust([spiky, steady, cheap], spiky, fit, max_tokens=50)[0] is spiky
    with pytest.raises(ValueError, match="no recipe fits 10 tokens"):
        choose_robust([spiky, cheap], spiky, fit, max_tokens=10)
    with pytest.raises(ValueError, match="cheap was measured on other problems than spiky"):
        resampled_accuracy([spiky, recipe_point("cheap", 20, {"p0": 1.0})], fit)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"confidence": 1.0}, r"confidence must be in \(0, 1\), got 1.0 \(--fit-confidence\)"),
        ({"confidence": 0}, r"confidence must be in \(0, 1\), got 0"),
        ({"tolerance": -0.1}, r"tolerance must be a share in \[0, 1\), e.g. 0.02 for 2 points"),
        ({"tolerance": 2}, r"got 2 \(--fit-tolerance\)"),
        ({"draws": 0}, r"at least 1 bootstrap draw, got 0 \(--fit-draws\)"),
    ],
)
def test_bad_bootstrap_settings_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        Bootstrap(**options)


def test_split_fits_equal_tune_at_each_split_and_spread_counts_the_differences():
    pools = kinds("d", every=3, majority=3, first=3, spread=1)
    pools += kinds("h", every=3, majority=5, first=1, spread=1)
    rules = [s for s in default_estimators([]) if s.strategy == "self-consistency"]
    fits = {"plain": None, "bootstrap": Bootstrap()}
    results = split_fits(pools, range(4), fits, 0.5, recipes=[LUCKY, EIGHT], rules=rules)
    assert [(r.seed, r.fit) for r in results[:3]] == [(0, "plain"), (0, "bootstrap"), (1, "plain")]
    assert len(results) == 8
    for r in results:
        dev, held = split([p.problem_id for p in pools], 0.5, r.seed)
        t = tune(pools, dev, held, recipes=[LUCKY, EIGHT], rules=rules, fit=fits[r.fit])
        assert t.held_recipe is not None and t.held_fixed is not None
        assert r.recipe == t.chosen.label and r.best_fixed == t.best_fixed.label
        assert r.dev_accuracy == pytest.approx(t.chosen.accuracy)
        assert r.dev_tokens == pytest.approx(t.chosen.tokens)
        assert r.held_accuracy == pytest.approx(t.held_recipe.accuracy)
        assert r.held_tokens == pytest.approx(t.held_recipe.tokens)
        assert r.held_wilson == pytest.approx(t.held_recipe.wilson)
        assert r.fixed_accuracy == pytest.approx(t.held_fixed.accuracy)
        assert r.fixed_tokens == pytest.approx(t.held_fixed.tokens)
    summary = spread(results)
    plain = [r.held_accuracy for r in results if r.fit == "plain"]
    robust = [r.held_accuracy for r in results if r.fit == "bootstrap"]
    assert summary["plain"]["better"] == summary["plain"]["worse"] == 0
    assert summary["bootstrap"]["better"] == 1 and summary["bootstrap"]["worse"] == 0
    assert summary["bootstrap"]["better"] == sum(b > a for a, b in zip(plain, robust, strict=True))
    assert summary["bootstrap"]["worse"] == sum(b < a for a, b in zip(plain, robust, strict=True))
    assert summary["bootstrap"]["held_accuracy"] == pytest.approx(np.mean(robust))
    assert summary["plain"]["held_min"] == min(plain) and summary["plain"]["splits"] == 4
    assert results[0].as_dict()["held_wilson"] == [round(x, 4) for x in results[0].held_wilson]


# The confidence-vote final rule: DeepConf's offline vote over the stored confidences.

CONFIDENCE_RECIPE = {**RECIPE, "final": "confidence-vote"}


def spread_of(text):
    """How far below the sampled token the scripted model's second choice lies: samples
    answering with a larger number are more peaked (more confident)."""
    return 0.2 + 0.5 * (int(text.rstrip(".").rsplit(" ", 1)[1]) % 9)


def with_tops(r, completions):
    """The completions with ``r.params.top_logprobs`` alternatives per token when asked for
    (the sampled token and ones ``spread_of(text)`` nats below it), as a real engine."""
    if not r.params.top_logprobs:
        return completions
    out = []
    for c in completions:
        d = spread_of(c.text)
        lps = tuple(
            TokenLogprob(t.token, t.logprob, ((t.token, t.logprob), ("~", t.logprob - d)))
            for t in c.logprobs or ()
        )
        out.append(dataclasses.replace(c, logprobs=lps or None))
    return out


class ConfidentEngine(ScriptedEngine):
    def _one(self, r):
        return with_tops(r, super()._one(r))


class ConfidentStageEngine(StageEngine):
    def _one(self, r):
        return with_tops(r, super()._one(r))


def test_offline_simulation_with_the_confidence_vote_final_equals_the_live_auto_run(tmp_path):
    task, problems, refs, pools = _pools_of_12(tmp_path, ConfidentEngine)
    recipe = from_dict(CONFIDENCE_RECIPE)
    sim = simulate(recipe, pools)
    auto = create("auto", recipe=CONFIDENCE_RECIPE, seed=0)
    stored = {p.problem_id: [s.stats["confidence"]["lowest"] for s in p.samples] for p in pools}
    live_acc, live_tokens, stages, finals = {}, [], [0, 0, 0], 0
    for p in problems:
        engine = ConfidentStageEngine(pool_script(refs))
        r = asyncio.run(auto.run(p, engine, None, Budget(n=8)))
        assert {q.params.top_logprobs for q in engine.requests} == {20}
        assert r.trace["confidences"] == stored[p.id][: len(r.candidates)]
        live_acc[p.id] = float(asyncio.run(task.grade(p, r)))
        live_tokens.append(r.usage.tokens_generated)
        stages[r.trace["stopped_at"]] += 1
        finals += r.trace["rule"] == "confidence-vote"
    assert sim.per_problem == live_acc
    assert sim.tokens == pytest.approx(sum(live_tokens) / len(live_tokens))
    assert sim.stages == pytest.approx(tuple(s / len(problems) for s in stages))
    assert finals == round(sim.stages[-1] * len(problems)) > 0
    majority = simulate(from_dict(RECIPE), pools)
    assert majority.per_problem != sim.per_problem, "the script should make the votes differ"
    # The same recipe run to the end equals the fixed rule confidence-vote@8 on these pools.
    every = from_dict({"stages": [{"draw": 8}], "final": "confidence-vote"})
    rule = [p for p in fixed_points(pools, ks=[8]) if p.label == "confidence-vote@8"]
    assert simulate(every, pools).per_problem == rule[0].per_problem


def test_the_grid_ends_in_confidence_vote_only_when_the_pools_carry_the_confidences():
    grid = recipe_grid(8, ["judge"], confidence=True)
    assert {r.final for r in grid} == {
        "majority",
        "confidence-vote",
        "best-of-n",
        "weighted-best-of-n",
    }
    assert len({repr(r.as_dict()) for r in grid}) == len(grid)
    assert all(r.needs_logprobs and r.scorer is None for r in grid if r.needs_confidences)
    plain = recipe_grid(8, ["judge"])
    assert {repr(r.as_dict()) for r in grid if not r.needs_confidences} == {
        repr(r.as_dict()) for r in plain
    }
    finals = [r.final for r in grid]
    assert finals.count("confidence-vote") == finals.count("majority")
    assert "confidence-vote" not in {r.final for r in plain}
    pools = synthetic(12, 8)
    ids = sorted({p.problem_id for p in pools})
    t = tune(pools, ids[:10], ids[10:])
    assert not t.confidence and not any(
        p.recipe and p.recipe.needs_confidences for p in t.dev_points
    )
    confident = [
        dataclasses.replace(
            p,
            samples=tuple(
                dataclasses.replace(s, stats={**s.stats, "confidence": {"lowest": 1.0 + i}})
                for i, s in enumerate(p.samples)
            ),
        )
        for p in pools
    ]
    t = tune(confident, ids[:10], ids[10:])
    assert t.confidence
    finals = {p.recipe.final for p in t.dev_points if p.recipe}
    assert finals == {"majority", "confidence-vote"}
    # Confidences from other top-k or windows than live auto's are left out of the grid.
    assert confidence_settings(20, 128) and not confidence_settings(5, 128)
    assert not confidence_settings(20, 64)
    t = tune(confident, ids[:10], ids[10:], confidence=False)
    assert not t.confidence and {p.recipe.final for p in t.dev_points if p.recipe} == {"majority"}
    assert from_dict(CONFIDENCE_RECIPE).describe().endswith("; else confidence-vote")


def test_a_confidence_vote_recipe_without_the_confidences_is_a_clear_error(tmp_path):
    recipe = from_dict(CONFIDENCE_RECIPE)
    with pytest.raises(ValueError, match="drawn without top log-probabilities.*--top-logprobs"):
        simulate(recipe, synthetic())
    task = create_task("arithmetic", level=1)
    problem = task.problems(1)[0]
    refs = {problem.messages[0]["content"]: int(problem.reference)}
    auto = create("auto", recipe=CONFIDENCE_RECIPE, seed=0)
    no_logprobs = ScriptedEngine(pool_script(refs), logprobs=False)
    with pytest.raises(ValueError, match="needs token log-probabilities"):
        asyncio.run(auto.run(problem, no_logprobs, None, Budget(n=8)))
    no_tops = StageEngine(pool_script(refs))
    with pytest.raises(ValueError, match="needs the top log-probabilities .* 'scripted'"):
        asyncio.run(auto.run(problem, no_tops, None, Budget(n=8)))
    two = from_dict({"stages": [{"draw": 2}], "final": "confidence-vote"})
    cands = [Candidate("a", "1", 1), Candidate("b", "2", 1)]
    with pytest.raises(ValueError, match="needs every sample's DeepConf confidence"):
        replay(two, cands)
    with pytest.raises(ValueError, match="got 1 for 2"):
        replay(two, cands, confidences=[0.5])
