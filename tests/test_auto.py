"""The ``auto`` strategy and its recipes: the escalation policy exactly on the scripted
engine (which stage stops, what is drawn and counted, what the trace says), recipe
validation, and a run on the real small model."""

import asyncio
import dataclasses
import json
import math

import pytest
from scripted import ScriptedEngine

from ponder.evals.pool import PoolConfig, sample_stats
from ponder.scoring import scorer
from ponder.strategies import create
from ponder.strategies.common import sample
from ponder.strategies.recipes import (
    Recipe,
    Stage,
    from_dict,
    load,
    more,
    replay,
    save,
    signals,
)
from ponder.types import Budget, Candidate, Completion, Problem, TokenLogprob, Usage

PROBLEM = Problem.from_question("What is 6 times 7?")
RECIPE = {
    "stages": [
        {"draw": 2, "stop_if": {"agreement": 1.0}},
        {"draw": 4, "stop_if": {"margin": 0.5}},
        {"draw": 2},
    ],
    "final": "majority",
}


class Waves(ScriptedEngine):
    """Sample ``i`` of a request with seed ``s`` answers ``table[s][i]`` (as the real engine,
    whose sample i draws from the random stream (s, i)); words = tokens."""

    def __init__(self, table, **kw):
        self.table = table
        super().__init__(lambda prefix, i: "", **kw)

    def _one(self, r):
        answers = self.table[r.params.seed]
        self.script = lambda prefix, i: "So" + " so" * i + f" the answer is {answers[i]}"
        return super()._one(r)


def run(engine, n=16, score=None, **config):
    config.setdefault("recipe", RECIPE)
    return asyncio.run(create("auto", **config).run(PROBLEM, engine, score, Budget(n=n)))


def tokens(i, answer="7"):
    return len(("So" + " so" * i + f" the answer is {answer}").split())


def test_agreeing_first_pair_stops_at_stage_zero():
    eng = Waves({0: ["42", "42"]})
    r = run(eng)
    assert r.answer == "42"
    assert [q.n for q in eng.requests] == [2] and eng.requests[0].params.seed == 0
    assert r.trace["stopped_at"] == 0 and r.trace["stopped"] == "rule"
    assert r.trace["rounds"][0]["signals"]["agreement"] == 1.0
    assert r.trace["rounds"][0]["thresholds"] == {"agreement": 1.0}
    assert r.trace["reason"] == "stage 0 rule fired: agreement 1 >= 1"
    assert r.usage.tokens_generated == tokens(0, "42") + tokens(1, "42")
    assert r.usage.engine_calls == 1 and r.trace["samples_drawn"] == 2


def test_disagreement_escalates_and_the_margin_rule_stops_stage_one():
    eng = Waves({0: ["42", "41"], 1: ["42", "42", "42", "40"]})
    r = run(eng)
    assert [(q.n, q.params.seed) for q in eng.requests] == [(2, 0), (4, 1)]
    first, second = r.trace["rounds"]
    assert first["fired"] is False and first["signals"]["agreement"] == 0.5
    assert second["fired"] is True and second["drawn"] == 6
    assert second["signals"]["agreement"] == pytest.approx(4 / 6)
    assert second["signals"]["margin"] == pytest.approx(3 / 6)
    assert r.answer == "42" and r.trace["stopped_at"] == 1
    expected = sum(tokens(i) for i in range(2)) + sum(tokens(i) for i in range(4))
    assert r.usage.tokens_generated == expected == sum(c.tokens for c in r.candidates)
    assert r.usage.engine_calls == 2
    assert [c.votes for c in r.candidates] == [4, 1, 4, 4, 4, 1]


def test_no_rule_fires_so_every_stage_is_drawn_and_the_final_rule_picks():
    eng = Waves({0: ["1", "2"], 1: ["3", "3", "4", "4"], 2: ["4", "5"]})
    r = run(eng)
    assert [q.n for q in eng.requests] == [2, 4, 2]
    assert r.trace["stopped"] == "end" and r.trace["stopped_at"] == 2
    assert r.trace["reason"] == "every stage drawn (8 samples); majority over all"
    assert r.answer == "4" and len(r.candidates) == 8
    assert r.trace["rounds"][1]["signals"]["margin"] == 0.0


def test_best_of_n_final_uses_the_scorer_over_all_samples_and_counts_its_calls():
    recipe = {**RECIPE, "final": "best-of-n"}
    eng = Waves({0: ["1", "2"], 1: ["3", "3", "4", "4"], 2: ["4", "5"]})
    judge = scorer(lambda p, text: 0.9 if text.endswith("2") else 0.1, name="likes-2")
    r = run(eng, score=judge, recipe=recipe)
    assert r.answer == "2" and r.trace["rule"] == "best-of-n"
    assert r.usage.scorer_calls == 8 and r.trace["scores"][1] == 0.9


def test_score_signal_stops_when_the_verifier_is_sure():
    recipe = {"stages": [{"draw": 2, "stop_if": {"score": 0.8}}, {"draw": 6}]}
    eng = Waves({0: ["1", "2"]})
    judge = scorer(lambda p, text: 0.9 if text.endswith("2") else 0.1, name="likes-2")
    r = run(eng, score=judge, recipe=recipe)
    assert r.trace["stopped_at"] == 0 and r.trace["rounds"][0]["signals"]["score"] == 0.9
    assert r.usage.scorer_calls == 2
    # A rule that fired on the score answers with the best-scored sample, not the vote
    # (here a tie that the vote breaks toward "1", the more confident shorter sample).
    assert r.answer == "2" and r.trace["rule"] == "best-of-n"
    out = replay(load_dict(recipe), r.candidates, r.trace["scores"], cap=2)
    assert out.rule == "best-of-n" and r.candidates[out.selection.index].answer == "2"
    # A rule without the score signal still answers with the vote.
    vote = {"stages": [{"draw": 2, "stop_if": {"agreement": 0.5}}, {"draw": 6}]}
    assert run(Waves({0: ["1", "2"]}), score=judge, recipe=vote).trace["rule"] == "majority"


def test_a_scored_recipe_without_a_scorer_is_a_clear_error():
    with pytest.raises(ValueError, match="auto"):
        run(Waves({0: ["1", "2"]}), recipe={**RECIPE, "final": "best-of-n"})


def test_the_budget_caps_the_draws():
    eng = Waves({0: ["1", "2"], 1: ["3", "4", "5", "6"]})
    r = run(eng, n=3)
    assert [q.n for q in eng.requests] == [2, 1]
    assert r.trace["samples_drawn"] == 3
    assert r.trace["reason"] == "budget reached after 3 samples; majority over all"


def test_confidence_signal_is_the_mean_geometric_token_probability():
    cands = [
        Candidate("a", "1", 3, mean_logprob=-0.1),
        Candidate("b", "1", 3, mean_logprob=-0.5),
        Candidate("c", None, 3, mean_logprob=-1.0),
    ]
    values = signals(cands, [0.2, None, 0.7])
    assert values["confidence"] == pytest.approx(
        (math.exp(-0.1) + math.exp(-0.5) + math.exp(-1)) / 3
    )
    assert values["agreement"] == pytest.approx(2 / 3) and values["margin"] == pytest.approx(2 / 3)
    assert values["score"] == 0.7


def test_replay_over_the_same_samples_equals_the_live_run():
    table = {0: ["7", "8"], 1: ["7", "7", "9", "8"], 2: ["8", "8"]}
    live = run(Waves(table))
    every = run(Waves(table), recipe={"stages": [{"draw": 2}, {"draw": 4}, {"draw": 2}]})
    out = replay(load_dict(RECIPE), every.candidates)
    assert out.drawn == live.trace["samples_drawn"] and out.stage == live.trace["stopped_at"]
    assert every.candidates[out.selection.index].answer == live.answer
    assert [e["signals"] for e in out.stages] == [e["signals"] for e in live.trace["rounds"]]


GIVE_UP = {
    "stages": [
        {"draw": 2, "stop_if": {"agreement": 1.0}, "give_up_if": {"truncated": 1.0}},
        {"draw": 4, "stop_if": {"margin": 0.5}},
        {"draw": 2},
    ],
}
EVERY = {"stages": [{"draw": 2}, {"draw": 4}, {"draw": 2}]}


class Cut(Waves):
    """As ``Waves``, but an answer ``"cut"`` is a sample that runs past a 12-token cap."""

    def _one(self, r):
        answers = self.table[r.params.seed]

        def script(prefix, i):
            if answers[i] == "cut":
                return "So" + " so" * 20 + " the answer is 3"
            return f"So the answer is {answers[i]}"

        self.script = script
        return ScriptedEngine._one(self, r)


def test_give_up_stops_when_every_sample_so_far_ran_out_of_tokens():
    eng = Cut({0: ["cut", "cut"]})
    r = run(eng, recipe=GIVE_UP, max_tokens=12)
    assert [q.n for q in eng.requests] == [2]
    assert all(c.finish_reason == "length" for c in r.candidates)
    first = r.trace["rounds"][0]
    assert first["signals"]["truncated"] == 1.0
    assert first["fired"] is False and first["gave_up"] is True
    assert first["give_up_thresholds"] == {"truncated": 1.0}
    assert r.trace["stopped"] == "gave up" and r.trace["stopped_at"] == 0
    assert r.trace["reason"] == ("stage 0 gave up: truncated 1 >= 1; majority over what was drawn")
    assert r.trace["rule"] == "majority" and r.usage.tokens_generated == 24


def test_a_partly_truncated_stage_does_not_give_up_and_escalates():
    eng = Cut({0: ["cut", "7"], 1: ["7", "7", "7", "7"]})
    r = run(eng, recipe=GIVE_UP, max_tokens=12)
    first, second = r.trace["rounds"]
    assert first["signals"]["truncated"] == 0.5 and first["gave_up"] is False
    assert second["fired"] is True and "gave_up" not in second
    assert r.trace["stopped"] == "rule" and r.answer == "7"


def test_the_stop_rule_wins_over_giving_up_and_a_give_up_answers_by_the_vote():
    same = [Candidate("x 5", "5", 12, finish_reason="length")] * 4
    out = replay(load_dict(GIVE_UP), same * 2)
    assert out.stopped_early and not out.gave_up and out.stage == 0
    assert out.stages[0]["fired"] is True and out.stages[0]["gave_up"] is False
    scored = load_dict(
        {
            "stages": [
                {"draw": 2, "stop_if": {"score": 0.9}, "give_up_if": {"truncated": 0.5}},
                {"draw": 2},
            ],
            "final": "best-of-n",
        }
    )
    mixed = [Candidate("a 1", "1", 12, finish_reason="length"), Candidate("b 2", "2", 5)]
    out = replay(scored, mixed * 2, [0.2, 0.8, 0.2, 0.8])
    assert out.gave_up and out.drawn == 2 and out.rule == "majority"
    assert scored.needs_scorer and not load_dict(GIVE_UP).needs_scorer


@pytest.mark.parametrize(
    "table",
    [
        {0: ["cut", "cut"], 1: ["7", "8", "7", "7"], 2: ["8", "8"]},
        {0: ["cut", "7"], 1: ["cut", "8", "7", "cut"], 2: ["8", "8"]},
    ],
)
def test_replay_with_a_give_up_rule_equals_the_live_run(table):
    live = run(Cut(table), recipe=GIVE_UP, max_tokens=12)
    every = run(Cut(table), recipe=EVERY, max_tokens=12)
    out = replay(load_dict(GIVE_UP), every.candidates)
    assert out.drawn == live.trace["samples_drawn"] and out.stage == live.trace["stopped_at"]
    assert out.gave_up is (live.trace["stopped"] == "gave up")
    assert [e["signals"] for e in out.stages] == [e["signals"] for e in live.trace["rounds"]]
    assert out.selection.index is None or (
        every.candidates[out.selection.index].answer == live.answer
    )


def test_give_up_rules_round_trip_and_read_in_one_line():
    recipe = load_dict(GIVE_UP)
    assert recipe.stages[0].give_up_if == {"truncated": 1.0}
    assert from_dict(recipe.as_dict()) == recipe
    assert "give_up_if" in recipe.as_dict()["stages"][0]
    assert "give_up_if" not in recipe.as_dict()["stages"][1]
    assert recipe.describe().startswith(
        "draw 2, stop if agreement>=1, give up if truncated>=1; draw 4"
    )


def load_dict(data):
    return from_dict(data)


def test_recipe_files_round_trip_and_the_built_in_recipe_loads(tmp_path):
    recipe = load_dict({**RECIPE, "scorer": "judge", "about": {"task": "arithmetic"}})
    path = save(recipe, tmp_path / "r.json")
    assert load(path) == recipe and json.loads(path.read_text())["format"] == "ponder-recipe/1"
    built_in = load()
    assert built_in.stages and built_in.final == "majority"
    r = asyncio.run(create("auto").run(PROBLEM, Waves({0: ["5", "5"]}), None, Budget(n=16)))
    assert r.trace["recipe"]["stages"] == built_in.as_dict()["stages"]
    r = run(Waves({0: ["5", "5"]}), recipe=str(path))
    assert r.trace["stopped_at"] == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"stages": []}, "at least one stage"),
        ({"stages": [{"draw": 0}]}, r"stages\[0\].*'draw' must be an integer >= 1"),
        ({"stages": [{"draw": 2, "stop_if": {"agree": 1}}]}, "unknown signal 'agree'"),
        (
            {"stages": [{"draw": 2, "stop_if": {"margin": 2}}]},
            r"'stop_if.margin' must be in \[0, 1\]",
        ),
        ({"stages": [{"draw": 2, "stop": {}}]}, r"stages\[0\] has unknown field\(s\) 'stop'"),
        ({"stages": [{"draw": 2}], "final": "vote"}, "'final' must be one of"),
        ({"stages": [{"draw": 2}], "format": "v2"}, "'format' must be"),
        ({"stages": [{"draw": 2}], "budget": 3}, r"unknown field\(s\) 'budget'"),
        ([1, 2], "a recipe is a JSON object"),
        (
            {"stages": [{"draw": 2, "give_up_if": {"cut": 1}}]},
            "stage 'give_up_if' has unknown signal 'cut'",
        ),
        (
            {"stages": [{"draw": 2, "give_up_if": {"truncated": 1.5}}]},
            r"'give_up_if.truncated' must be in \[0, 1\]",
        ),
        (
            {"stages": [{"draw": 2, "give_up_if": ["truncated"]}]},
            "stage 'give_up_if' must be an object signal -> threshold",
        ),
    ],
)
def test_bad_recipes_are_errors_that_name_the_field(data, message):
    with pytest.raises(ValueError, match=message):
        from_dict(data)


def test_bad_recipe_files_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="cannot read recipe"):
        create("auto", recipe=str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{stages: ")
    with pytest.raises(ValueError, match="not valid JSON"):
        create("auto", recipe=str(bad))
    with pytest.raises(ValueError, match="recipe must be a file path"):
        create("auto", recipe=3)


def test_stage_signals_name_only_known_signals():
    assert Stage(2, {"confidence": 0.5}).stop_if == {"confidence": 0.5}
    assert Recipe((Stage(1),), "weighted-best-of-n").needs_scorer


def test_auto_on_the_real_model(engine):
    problem = Problem.from_question("What is 2 plus 2? Answer with a number.")
    strategy = create("auto", max_tokens=24, recipe=RECIPE)
    r = asyncio.run(strategy.run(problem, engine, None, Budget(n=8)))
    drawn = r.trace["samples_drawn"]
    assert drawn == len(r.candidates) == sum(x["samples"] for x in r.trace["rounds"])
    assert drawn in (2, 6, 8)
    assert r.usage.tokens_generated == sum(c.tokens for c in r.candidates) > 0
    assert r.usage.engine_calls == len(r.trace["rounds"])
    assert all(c.tokens <= 24 for c in r.candidates)
    # The truncated signal reads the real engine's finish reasons: "length" only at the cap.
    cut = [c for c in r.candidates if c.finish_reason == "length"]
    assert all(c.tokens == 24 for c in cut)
    assert r.trace["rounds"][-1]["signals"]["truncated"] == pytest.approx(len(cut) / drawn)
    assert r.trace["reason"]


def test_auto_through_the_server_with_the_openai_client(engine):
    import openai

    from ponder.server import ServerSettings, create_app
    from ponder.server.main import serving_in_background

    settings = ServerSettings(model="smollm2", max_budget=8, max_tokens=64, concurrency=2)
    with serving_in_background(create_app(engine, settings)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
        r = client.chat.completions.create(
            model="ponder/auto@8",
            messages=[{"role": "user", "content": "What is 2 plus 3? Answer with a number."}],
            max_tokens=16,
            seed=1,
        )
    assert r.model == "ponder/auto@8" and r.choices[0].message.content
    assert r.usage is not None and 0 < r.usage.completion_tokens <= 8 * 16


# The model's own "would more attempts help?" (the no_more signal) and recipe temperatures.

NO_MORE = {
    "stages": [{"draw": 2, "stop_if": {"no_more": 0.6}}, {"draw": 4, "stop_if": {"margin": 0.5}}],
}


def yes_no(p_yes, other=0.0):
    """A first token whose top alternatives give P(yes) = ``p_yes`` over yes/no (spellings
    split as 'Yes' / ' yes'), with ``other`` mass on a third token."""
    rest = 1 - other
    top = (
        ("Yes", math.log(rest * p_yes / 2 or 1e-30)),
        (" yes", math.log(rest * p_yes / 2 or 1e-30)),
        ("No", math.log(rest * (1 - p_yes) or 1e-30)),
        ("Maybe", math.log(other or 1e-30)),
    )
    best = max(top, key=lambda kv: kv[1])
    return TokenLogprob(best[0], best[1], top)


class Asking(Waves):
    """``Waves``, and the question of ``recipes.more`` about a sample answered with P(yes) =
    ``p_yes(sample text)`` (one token, its top log-probabilities)."""

    def __init__(self, table, p_yes, **kw):
        super().__init__(table, **kw)
        self.p_yes = p_yes
        self.asked: list[str] = []

    def _one(self, r):
        if isinstance(r.prefix, tuple) and r.prefix[-1]["content"] == more.QUESTION:
            assert r.params == more.PARAMS and r.prefix[-2]["role"] == "assistant"
            text = r.prefix[-2]["content"]
            self.asked.append(text)
            first = self.p_yes(text)
            usage = Usage(tokens_generated=1, prompt_tokens_computed=3, engine_calls=1)
            return [Completion(first.token, 1, "length", usage, (first,), 10)]
        return super()._one(r)


def test_no_more_stops_when_the_model_says_more_attempts_would_not_help():
    eng = Asking({0: ["42", "41"]}, lambda text: yes_no(0.25))
    r = run(eng, recipe=NO_MORE)
    assert r.trace["stopped_at"] == 0 and r.trace["stopped"] == "rule"
    first = r.trace["rounds"][0]
    assert first["signals"]["no_more"] == pytest.approx(0.75) and first["asked"] == 2
    assert r.trace["p_yes"] == pytest.approx([0.25, 0.25]) and r.trace["undecided"] == 0
    assert r.trace["reason"] == "stage 0 rule fired: no_more 0.75 >= 0.6"
    assert eng.asked == [c.text for c in r.candidates]
    # The samples' tokens, plus one generated token and one scorer call per sample asked.
    assert r.usage.tokens_generated == tokens(0, "42") + tokens(1, "41") + 2
    assert r.usage.scorer_calls == 2 and r.usage.engine_calls == 1 + 2
    assert r.answer == "42"


def test_no_more_low_escalates_and_a_later_stage_without_it_asks_nothing_more():
    eng = Asking({0: ["42", "41"], 1: ["42", "42", "42", "40"]}, lambda text: yes_no(0.9))
    r = run(eng, recipe=NO_MORE)
    first, second = r.trace["rounds"]
    assert first["fired"] is False and first["signals"]["no_more"] == pytest.approx(0.1)
    assert second["fired"] is True and second["signals"]["no_more"] == pytest.approx(0.1)
    assert len(eng.asked) == 2 and r.usage.scorer_calls == 2
    assert r.usage.tokens_generated == sum(c.tokens for c in r.candidates) + 2


def test_a_later_stage_naming_no_more_asks_only_about_the_new_samples():
    recipe = {
        "stages": [
            {"draw": 2, "stop_if": {"no_more": 0.9}},
            {"draw": 3, "stop_if": {"no_more": 0.5}},
            {"draw": 3},
        ]
    }
    p = {"1": 0.8, "2": 0.8, "3": 0.1, "4": 0.1, "5": 0.1}
    eng = Asking(
        {0: ["1", "2"], 1: ["3", "4", "5"]}, lambda text: yes_no(p[text.rsplit(" ", 1)[1]])
    )
    r = run(eng, recipe=recipe)
    assert [q.n for q in eng.requests if q.params.max_tokens > 1] == [2, 3]
    assert [t.rsplit(" ", 1)[1] for t in eng.asked] == ["1", "2", "3", "4", "5"]
    assert r.trace["rounds"][1]["signals"]["no_more"] == pytest.approx((0.2 * 2 + 0.9 * 3) / 5)
    assert r.trace["stopped_at"] == 1 and r.usage.scorer_calls == 5


def test_a_recipe_without_no_more_never_asks():
    eng = Asking({0: ["1", "2"], 1: ["3", "3", "4", "4"], 2: ["4", "5"]}, lambda t: yes_no(0.1))
    r = run(eng)
    assert eng.asked == [] and "p_yes" not in r.trace and r.usage.scorer_calls == 0
    assert all("no_more" not in e["signals"] for e in r.trace["rounds"])


def test_no_more_reads_every_yes_spelling_normalised_against_no_and_undecided_is_half():
    eng = Asking({0: ["7", "7"]}, lambda text: yes_no(0.3, other=0.5))
    r = run(eng, recipe=NO_MORE)
    assert r.trace["p_yes"] == pytest.approx([0.3, 0.3]) and r.trace["stopped_at"] == 0
    blank = TokenLogprob("Maybe", -0.1, (("Maybe", -0.1), ("Perhaps", -2.0)))
    eng = Asking({0: ["7", "7"], 1: ["7"] * 4}, lambda text: blank)
    r = run(eng, recipe=NO_MORE)
    assert r.trace["p_yes"] == [0.5, 0.5] and r.trace["undecided"] == 2
    assert r.trace["stopped_at"] == 1


def test_no_more_needs_an_engine_with_logprobs():
    with pytest.raises(ValueError, match="needs token log-probabilities"):
        run(Asking({0: ["1", "2"]}, lambda t: yes_no(0.1), logprobs=False), recipe=NO_MORE)


def test_replay_with_the_asked_p_yes_equals_the_live_run():
    table = {0: ["7", "8"], 1: ["7", "7", "9", "8"]}
    p = {"7": 0.3, "8": 0.6, "9": 0.2}
    recipe = {
        "stages": [
            {"draw": 2, "stop_if": {"agreement": 1.0}},
            {"draw": 4, "stop_if": {"no_more": 0.6, "margin": 0.3}},
        ]
    }

    def answer(text):
        return yes_no(p[text.rsplit(" ", 1)[1]])

    live = run(Asking(table, answer), recipe=recipe)
    every = run(Asking(table, answer), recipe={"stages": [{"draw": 2}, {"draw": 4}]})
    p_yes = [p[c.answer] for c in every.candidates]
    out = replay(load_dict(recipe), every.candidates, p_yes=p_yes)
    assert out.asked == len(live.trace["p_yes"]) == 6
    assert out.drawn == live.trace["samples_drawn"] and out.stage == live.trace["stopped_at"]
    assert [e["signals"] for e in out.stages] == [e["signals"] for e in live.trace["rounds"]]
    with pytest.raises(ValueError, match="P\\(yes\\) is known for 2 of them"):
        replay(load_dict(recipe), every.candidates, p_yes=p_yes[:2])


def test_recipe_and_stage_temperatures_set_the_sampling_temperature():
    recipe = {
        "temperature": 0.3,
        "stages": [{"draw": 2, "stop_if": {"agreement": 1.0}}, {"draw": 2, "temperature": 1.1}],
    }
    eng = Waves({0: ["1", "2"], 1: ["3", "4"]})
    r = run(eng, recipe=recipe, temperature=0.9)
    assert [q.params.temperature for q in eng.requests] == [0.3, 1.1]
    assert [e["temperature"] for e in r.trace["rounds"]] == [0.3, 1.1]
    eng = Waves({0: ["1", "2"], 1: ["3", "4", "5", "6"], 2: ["5", "6"]})
    run(eng, temperature=0.9)
    assert {q.params.temperature for q in eng.requests} == {0.9}
    parsed = load_dict(recipe)
    assert parsed.temperature_of(0) == 0.3 and parsed.temperature_of(1) == 1.1
    assert "T=0.3: " in parsed.describe() and "at T=1.1" in parsed.describe()
    assert from_dict(parsed.as_dict()) == parsed


def test_a_recipe_draws_at_the_cap_it_was_fitted_at_and_the_budget_still_bounds_it():
    recipe = {**RECIPE, "max_tokens": 64}
    eng = Waves({0: ["7", "7"]})
    r = run(eng, recipe=recipe, max_tokens=512)
    assert [q.params.max_tokens for q in eng.requests] == [64]
    assert r.trace["max_tokens"] == 64 and "note" not in r.trace
    eng = Waves({0: ["7", "7"]})
    r = asyncio.run(
        create("auto", recipe=recipe).run(PROBLEM, eng, None, Budget(n=16, max_tokens=32))
    )
    assert [q.params.max_tokens for q in eng.requests] == [32]
    assert r.trace["max_tokens"] == 32
    assert "below the 64 the recipe was fitted at" in r.trace["note"]
    eng = Waves({0: ["7", "7"]})
    r = run(eng, max_tokens=100)
    assert [q.params.max_tokens for q in eng.requests] == [100] and "note" not in r.trace
    parsed = load_dict(recipe)
    assert parsed.max_tokens == 64 and parsed.as_dict()["max_tokens"] == 64
    assert parsed.describe().startswith("max_tokens=64: draw 2")
    assert from_dict(parsed.as_dict()) == parsed
    assert "max_tokens" not in load_dict(RECIPE).as_dict()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"stages": [{"draw": 2}], "temperature": -1}, r"recipe 'temperature' must be"),
        ({"stages": [{"draw": 2}], "max_tokens": 0}, r"'max_tokens' must be an integer >= 1"),
        ({"stages": [{"draw": 2}], "max_tokens": 6.5}, r"'max_tokens' must be an integer >= 1"),
        ({"stages": [{"draw": 2, "temperature": "hot"}]}, r"stages\[0\].*'temperature' must be"),
        ({"stages": [{"draw": 2, "stop_if": {"no_more": 1.5}}]}, "no_more' must be in"),
    ],
)
def test_bad_temperatures_and_no_more_thresholds_are_clear_errors(data, message):
    with pytest.raises(ValueError, match=message):
        from_dict(data)


def test_the_recipe_says_how_many_samples_no_more_may_ask_about():
    assert load_dict(NO_MORE).asks == 2 and load_dict(NO_MORE).needs_logprobs
    assert load_dict(RECIPE).asks == 0
    late = {"stages": [{"draw": 2}, {"draw": 3, "stop_if": {"no_more": 0.5}}, {"draw": 1}]}
    assert load_dict(late).asks == 5


def test_auto_with_no_more_on_the_real_model(engine):
    problem = Problem.from_question("What is 2 plus 2? Answer with a number.")
    strategy = create("auto", max_tokens=24, recipe=NO_MORE)
    r = asyncio.run(strategy.run(problem, engine, None, Budget(n=6)))
    asked = r.trace["p_yes"]
    assert len(asked) == 2 and all(0 <= p <= 1 for p in asked)
    assert r.trace["rounds"][0]["signals"]["no_more"] == pytest.approx(
        sum(1 - p for p in asked) / 2
    )
    assert r.usage.scorer_calls == 2
    assert r.usage.tokens_generated == sum(c.tokens for c in r.candidates) + 2
    # The same question asked again reads the same P(yes) (one greedy token).
    again = asyncio.run(more.ask(engine, problem, [c.text for c in r.candidates[:2]]))
    assert again.p_yes == pytest.approx(asked, abs=1e-3)
    print("p_yes", asked, "usage of asking again", again.usage)


# The confidence-vote final rule (DeepConf's offline filter-and-vote).

CONFIDENCE = {**RECIPE, "final": "confidence-vote"}


class Confident(Waves):
    """``Waves``, with two top alternatives per token when asked for them: samples answering
    9 are peaked (the second choice 5 nats below), the others flat (0.2 nats)."""

    def _one(self, r):
        out = super()._one(r)
        if not r.params.top_logprobs:
            return out
        done = []
        for c in out:
            d = 5.0 if c.text.endswith("9") else 0.2
            top = tuple(
                TokenLogprob(t.token, t.logprob, ((t.token, t.logprob), ("~", t.logprob - d)))
                for t in c.logprobs
            )
            done.append(dataclasses.replace(c, logprobs=top))
        return done


def test_confidence_vote_final_votes_by_deepconf_confidence_and_only_it_asks_for_top_logprobs():
    table = {0: ["1", "2"], 1: ["1", "1", "9", "9"], 2: ["9", "1"]}
    eng = Confident(table)
    r = run(eng, recipe=CONFIDENCE)
    assert [q.params.top_logprobs for q in eng.requests] == [20, 20, 20]
    # Token confidence -mean(lp, lp - d) = 0.5 + d / 2: 3.0 for the 9s, 0.6 for the rest;
    # all are at or above the 10th percentile, so all vote, and three 9s outweigh four 1s.
    conf = [3.0 if c.answer == "9" else 0.6 for c in r.candidates]
    assert r.trace["confidences"] == pytest.approx(conf)
    assert r.answer == "9" and r.trace["rule"] == "confidence-vote"
    assert r.trace["reason"] == "every stage drawn (8 samples); confidence-vote over all"
    out = replay(load_dict(CONFIDENCE), r.candidates, confidences=r.trace["confidences"])
    assert r.candidates[out.selection.index].answer == "9" and out.rule == "confidence-vote"
    eng = Confident(table)
    r = run(eng)
    assert r.answer == "1" and "confidences" not in r.trace
    assert {q.params.top_logprobs for q in eng.requests} == {0}
    # A stop rule that fires still answers with the majority.
    r = run(Confident({0: ["4", "4"]}), recipe=CONFIDENCE)
    assert r.trace["rule"] == "majority" and r.trace["confidences"] == pytest.approx([0.6, 0.6])


def test_a_confidence_vote_recipe_needs_top_logprobs():
    recipe = load_dict(CONFIDENCE)
    assert recipe.needs_confidences and recipe.needs_logprobs and not recipe.needs_scorer
    assert from_dict(recipe.as_dict()) == recipe and not load_dict(RECIPE).needs_confidences
    with pytest.raises(ValueError, match="needs token log-probabilities"):
        run(Confident({0: ["1", "2"]}, logprobs=False), recipe=CONFIDENCE)
    with pytest.raises(ValueError, match="needs the top log-probabilities of every token"):
        run(Waves({0: ["1", "2"]}), recipe=CONFIDENCE)
    with pytest.raises(ValueError, match="'final' must be one of .*'confidence-vote'"):
        from_dict({**RECIPE, "final": "deepconf"})


def test_auto_ending_in_confidence_vote_on_the_real_model_reads_what_a_pool_stores(engine):
    problem = Problem.from_question("What is 2 plus 2? Answer with a number.")
    config = PoolConfig(n=4, max_tokens=24)
    params = config.sampling(Budget(), seed=0, logprobs=True, top_logprobs=config.top_logprobs)
    pooled = asyncio.run(sample(engine, problem, params, 4))
    stored = [sample_stats(c, config)["confidence"]["lowest"] for c in pooled]
    recipe = {"stages": [{"draw": 4}], "final": "confidence-vote"}
    strategy = create("auto", max_tokens=24, seed=0, recipe=recipe)
    r = asyncio.run(strategy.run(problem, engine, None, Budget(n=4)))
    assert [c.text for c in r.candidates] == [c.text for c in pooled]
    assert r.trace["confidences"] == pytest.approx(stored, abs=1e-3)
    assert r.trace["rule"] == "confidence-vote" and r.answer is not None
