import asyncio

import pytest
from scripted import ScriptedEngine

from ponder import solve
from ponder.strategies import create, names
from ponder.strategies.selection import majority
from ponder.types import Budget, Candidate, Problem, Request

PROBLEM = Problem.from_question("What is 6 times 7?")


def run(strategy, engine, n, **config):
    return asyncio.run(create(strategy, **config).run(PROBLEM, engine, None, Budget(n=n)))


def test_registry():
    assert {"greedy", "self-consistency"} <= set(names())
    assert "vote" in names(with_aliases=True)
    with pytest.raises(ValueError, match="unknown strategy"):
        create("nope")


def test_vote_picks_the_majority_in_one_batched_request():
    answers = ["42", "41", "42", "40", "42", "41"]
    eng = ScriptedEngine(lambda prefix, i: f"Reasoning... The answer is {answers[i]}.")
    r = run("vote", eng, 6)
    assert r.answer == "42"
    assert [c.votes for c in r.candidates] == [3, 2, 3, 1, 3, 2]
    assert len(eng.requests) == 1 and eng.requests[0].n == 6
    assert r.usage.tokens_generated == sum(c.tokens for c in r.candidates)
    assert r.trace["winner"] == "42"


def test_vote_treats_equivalent_answers_as_one():
    answers = ["0.5", "1/2", "3", "3"]
    eng = ScriptedEngine(lambda prefix, i: f"The answer is {answers[i]}")
    r = run("vote", eng, 4)
    assert r.candidates[0].votes == 2 and r.candidates[2].votes == 2
    # tie: both clusters have two members and no log-probs; the shorter member decides
    assert r.answer in {"0.5", "3"}


def test_majority_tie_breaks_by_logprob_then_length():
    c = [
        Candidate("long " * 9 + "1", "1", 10, mean_logprob=-0.1),
        Candidate("2", "2", 1, mean_logprob=-2.0),
        Candidate("long " * 9 + "1", "1", 10),
        Candidate("x 2", "2", 2),
    ]
    winner, clusters = majority(c)
    assert winner == "1"
    # without log-probs the shorter cluster wins; a cluster with them beats one without
    no_lp = [Candidate("a b c", "1", 3), Candidate("a", "2", 1)]
    assert majority(no_lp)[0] == "2"
    mixed = [Candidate("a b c", "1", 3, mean_logprob=-3.0), Candidate("a", "2", 1)]
    assert majority(mixed)[0] == "1"
    c2 = [Candidate("a", "1", 3, mean_logprob=-1.0), Candidate("b", "2", 3, mean_logprob=-0.2)]
    assert majority(c2)[0] == "2"
    assert majority([Candidate("none", None, 1)]) == (None, {})


def test_greedy_sends_one_greedy_request():
    eng = ScriptedEngine(lambda prefix, i: "The answer is 42")
    r = run("greedy", eng, 5)
    assert r.answer == "42"
    assert eng.requests[0].params.temperature == 0 and eng.requests[0].n == 1


def test_budget_must_be_positive():
    with pytest.raises(ValueError, match="budget must be >= 1"):
        Budget(n=0)


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="no setting 'temprature'"):
        create("vote", temprature=0.3)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        create("self-consistency", temperature=-1)


def test_solve_on_the_real_model(engine):
    q = "What is 2 plus 2? Answer with a number."
    r = solve(q, strategy="vote", budget=4, engine=engine, max_tokens=48)
    assert len(r.candidates) == 4
    assert r.usage.tokens_generated == sum(c.tokens for c in r.candidates)
    n_prompt = len(engine.tokenize(engine.render(Request(Problem.from_question(q).messages))))
    assert r.usage.prompt_tokens_computed <= n_prompt
    assert r.usage.prompt_tokens_cached >= 3 * n_prompt
    assert sum(c.votes > 0 for c in r.candidates) == sum(c.answer is not None for c in r.candidates)
