"""Step-level search strategies against a scripted engine (exact) and the real small model."""

import asyncio
import math
from collections import Counter
from itertools import pairwise

import pytest
from scripted import ScriptedEngine

from ponder.scoring import scorer as make_scorer
from ponder.scoring.judge import JudgeScorer
from ponder.strategies import create
from ponder.strategies.resampling import derive_seed
from ponder.types import Budget, Completion, Problem, TokenLogprob, Usage

Q = "Q"
PROBLEM = Problem.from_question(Q)
D = "\n\n"


def steps_of(prefix: str) -> list[str]:
    """The completed steps of the partial solution in a scripted prefix."""
    partial = prefix[len(Q) :]
    return partial.split(D)[:-1] if partial else []


def branching(prefix: str, i: int) -> str:
    """Sample ``i`` at the root starts a good (even i) or bad (odd i) branch; each branch
    takes two more steps, then ends with its answer (42 good, 7 bad)."""
    steps = steps_of(prefix)
    if not steps:
        return f"start {'good' if i % 2 == 0 else 'bad'} {i}{D}"
    branch = "good" if "good" in steps[0] else "bad"
    if len(steps) < 3:
        return f"{branch} step{len(steps)} {i}{D}"
    return f"so the answer is {42 if branch == 'good' else 7}"


def prefers_good(high=0.9, low=0.2):
    return make_scorer(
        lambda problem, steps: high if "good" in "".join(steps) else low, process=True
    )


class CountingEngine(ScriptedEngine):
    """A scripted engine that counts batched calls and can see each request's seed."""

    def __init__(self, script, **kw):
        super().__init__(script, **kw)
        self.calls = 0
        self.batches = []  # requests per call
        self.seed = None

    async def generate(self, requests):
        self.calls += 1
        self.batches.append(len(requests))
        self.requests.extend(requests)
        out = []
        for r in requests:
            self.seed = r.params.seed
            out.append(self._one(r))
        return out


def run(strategy, engine, scorer, n, **config):
    return asyncio.run(create(strategy, **config).run(PROBLEM, engine, scorer, Budget(n=n)))


def check_tree(trace):
    """A well-formed tree: parents exist and come first, depths agree, one selected path
    from a root child down to the chosen leaf."""
    nodes = trace["nodes"]
    assert trace["kind"] == "tree" and nodes
    for k, node in enumerate(nodes):
        assert node["id"] == k
        parent = node["parent"]
        if parent is None:
            assert node["depth"] == 0
        else:
            assert 0 <= parent < k and node["depth"] == nodes[parent]["depth"] + 1
    selected = [n["id"] for n in nodes if n["selected"]]
    chosen = trace["chosen"]
    path = []
    cur = chosen
    while cur is not None:
        path.append(cur)
        cur = nodes[cur]["parent"]
    assert sorted(selected) == sorted(path) and nodes[chosen]["finished"]


def path_text(nodes, k):
    out = []
    while k is not None:
        out.append(nodes[k]["text"])
        k = nodes[k]["parent"]
    return "".join(reversed(out))


def total_tokens(trace):
    return sum(n["tokens"] for n in trace["nodes"])


# ---- beam search ----------------------------------------------------------------------


def test_beam_search_keeps_n_over_m_beams_and_finds_the_preferred_branch():
    eng = CountingEngine(branching)
    r = run("beam-search", eng, prefers_good(), 8, beam_width=2)
    assert r.answer == "42"
    rounds = r.trace["rounds"]
    # rounds 0-2 keep exactly 8 // 2 = 4 beams, all on the good branch; round 3 finishes
    assert [len(x["kept"]) for x in rounds] == [4, 4, 4, 0]
    nodes = r.trace["nodes"]
    for x in rounds[:3]:
        assert all("good" in path_text(nodes, k) for k in x["kept"])
    # every round generates exactly N = 8 steps: M = 2 per kept beam, in one batched call
    assert Counter(n["round"] for n in nodes) == {0: 8, 1: 8, 2: 8, 3: 8}
    assert eng.calls == 4
    assert [q.n for q in eng.requests] == [8] + [2] * 12
    assert r.usage.tokens_generated == total_tokens(r.trace)
    assert r.usage.scorer_calls == len(nodes)
    assert all(c.answer == "42" for c in r.candidates) and len(r.candidates) == 8
    check_tree(r.trace)


def test_beam_search_spreads_the_budget_over_fewer_beams_and_collects_finished_paths():
    # the bad branch ends at once; only 1 good beam would remain from a root of 1 good + 3 bad
    def script(prefix, i):
        steps = steps_of(prefix)
        if not steps:
            return f"start good{D}" if i == 0 else f"bad end, answer is 7 ({i})"
        if len(steps) < 2:
            return f"good step {i}{D}"
        return "so the answer is 42"

    eng = CountingEngine(script)
    r = run("beam-search", eng, prefers_good(), 4, beam_width=2)
    rounds = r.trace["rounds"]
    assert len(rounds[0]["finished"]) == 3 and len(rounds[0]["kept"]) == 1
    # the single surviving beam is expanded into all N = 4 next steps
    assert eng.requests[1].n == 4
    assert r.answer == "42"
    # the finished paths are candidates: 4 good ones beat the 3 bad ones, top N kept
    assert len(r.candidates) == 4 and all(c.answer == "42" for c in r.candidates)


def test_beam_search_lookahead_scores_the_end_of_a_greedy_rollout():
    seen = []

    def score(problem, steps):
        seen.append(len(steps))
        return 0.9 if "good" in "".join(steps) else 0.2

    eng = CountingEngine(branching)
    r = run("beam-search", eng, make_scorer(score, process=True), 4, beam_width=2, lookahead=1)
    assert r.answer == "42"
    nodes = r.trace["nodes"]
    round0 = [n for n in nodes if n["round"] == 0]
    # each first step was scored after one more (greedy, not kept) step
    assert all(n["lookahead"].startswith(("good step1", "bad step1")) for n in round0)
    assert seen[:4] == [2, 2, 2, 2]
    greedy = [q for q in eng.requests if q.params.temperature == 0]
    assert greedy and all(q.n == 1 for q in greedy)
    assert r.usage.tokens_generated > total_tokens(r.trace)  # rollouts are paid for
    check_tree(r.trace)


def test_beam_search_last_round_finishes_the_answer():
    eng = CountingEngine(branching)
    r = run("beam-search", eng, prefers_good(), 4, beam_width=2, max_steps=2, max_tokens=50)
    last = [q for q in eng.requests if q.params.stop == ()]
    assert last and all(q.params.max_tokens == 50 - 3 for q in last)  # cap minus 3 words
    assert max(n["depth"] for n in r.trace["nodes"]) == 1
    assert all(n["finished"] for n in r.trace["nodes"] if n["depth"] == 1)
    check_tree(r.trace)


def test_a_step_cut_by_the_step_cap_does_not_end_the_solution():
    def script(prefix, i):
        return "one two three four five six" if len(prefix) < 20 else "done, answer is 5"

    eng = CountingEngine(script)
    r = run("beam-search", eng, prefers_good(), 2, beam_width=2, max_step_tokens=3)
    assert r.trace["nodes"][0]["finished"] is False
    assert r.answer == "5"


@pytest.mark.parametrize("strategy", ["beam-search", "particle-filter", "dvts"])
def test_a_step_ending_on_the_delimiter_exactly_at_the_cap_ends_the_solution(strategy):
    # Found on the real model: a step that stopped at the delimiter with the solution at
    # exactly max_tokens was left unfinished, and the next step had no room left.
    def script(prefix, i):
        return f"w{i} x y{D}"  # 3 tokens a step, never an answer

    budget = 4 if strategy != "particle-filter" else 2
    r = run(strategy, ScriptedEngine(script), prefers_good(), budget, max_tokens=6)
    nodes = r.trace["nodes"]
    assert all(n["depth"] <= 1 for n in nodes)  # two steps of 3 tokens fill the cap
    assert all(n["finished"] for n in nodes if n["depth"] == 1)
    assert r.usage.tokens_generated <= 6 * budget * 2


@pytest.mark.parametrize("strategy", ["beam-search", "particle-filter", "dvts"])
def test_finish_on_ends_a_path_at_the_step_that_holds_it(strategy):
    # its_hub's stop_token: a step with the answer phrase ends its path, where otherwise
    # the path goes on until the end of the turn (here: a model that keeps talking).
    def script(prefix, i):
        k = len(steps_of(prefix))
        return f"The answer is 5.{D}" if k == 1 else f"step {k} {i}{D}"

    budget = 4 if strategy != "particle-filter" else 2
    on = run(strategy, ScriptedEngine(script), prefers_good(), budget, max_steps=6,
             finish_on="The answer is")  # fmt: skip
    assert max(n["depth"] for n in on.trace["nodes"]) == 1
    assert all(n["finished"] for n in on.trace["nodes"] if n["depth"] == 1)
    assert on.answer == "5"
    off = run(strategy, ScriptedEngine(script), prefers_good(), budget, max_steps=6)
    assert max(n["depth"] for n in off.trace["nodes"]) == 5  # on to max_steps
    assert off.usage.tokens_generated > on.usage.tokens_generated


def test_finish_on_unset_keeps_stored_run_ids():
    # Runs stored before finish_on existed keep their ids: it is named only when set.
    from ponder.evals.runner import _config_dict

    assert "finish_on" not in _config_dict(create("particle-filter"))
    assert "aggregation" in _config_dict(create("particle-filter"))
    set_ = _config_dict(create("particle-filter", finish_on="The answer is"))
    assert set_["finish_on"] == "The answer is"


# ---- DVTS -----------------------------------------------------------------------------


def test_dvts_subtrees_are_independent():
    # subtree 1 (its own seed) only ever sees bad first steps; DVTS must keep it going on
    # its own greedy path, where beam search would prune it for the good subtree's steps
    bad_seed = derive_seed(0, 0, 1)
    eng = CountingEngine(lambda p, i: None)

    def script(prefix, i):
        if not steps_of(prefix) and eng.seed == bad_seed:
            return f"start bad {i}{D}"
        return branching(prefix, i)

    eng.script = script
    r = run("dvts", eng, prefers_good(), 4, beam_width=2)
    nodes = r.trace["nodes"]
    # every node belongs to its parent's subtree; each round, one request per live subtree
    for n in nodes:
        if n["parent"] is not None:
            assert n["subtree"] == nodes[n["parent"]]["subtree"]
    assert [q.n for q in eng.requests] == [2] * 8 and eng.calls == 4
    # each subtree is a chain: only its kept node per round has children
    for n in nodes:
        kids = [c for c in nodes if c["parent"] == n["id"]]
        assert len(kids) == (2 if n.get("kept") and not n["finished"] else 0)
    leaves = zip(r.trace["leaves"], r.candidates, strict=True)
    answers = {nodes[leaf]["subtree"]: c.answer for leaf, c in leaves}
    assert answers == {0: "42", 1: "7"}
    assert r.answer == "42"  # weighted vote: the good answer's scores weigh more
    assert r.usage.scorer_calls == len(nodes)
    check_tree(r.trace)


def test_dvts_spreads_a_budget_that_is_not_a_multiple_of_the_beam_width():
    # budget 10, beam width 4: 2 subtrees; the 2 left-over steps per round go to them
    # (5 each) instead of being silently dropped (4 each)
    eng = CountingEngine(branching)
    r = run("dvts", eng, prefers_good(), 10, beam_width=4)
    first = eng.requests[:2]
    assert [q.n for q in first] == [5, 5]
    assert sum(n["depth"] == 0 for n in r.trace["nodes"]) == 10
    assert r.answer == "42"
    check_tree(r.trace)


# ---- the judge as process scorer -------------------------------------------------------


class JudgedEngine(CountingEngine):
    """Steps from a script; judge prompts answered Yes with P = 0.1 when the text judged
    (the last paragraph for the last-step question, else the whole solution) has "wrong"."""

    def __init__(self, script):
        super().__init__(script)
        self.questions = []

    def _one(self, r):
        text = self.prefix_text(r)
        if not text.endswith("Answer Yes or No."):
            return super()._one(r)
        solution = text.split("Solution so far:\n", 1)[1].rsplit("\n\nIs the", 1)[0]
        question = text.rsplit("\n\n", 1)[1]
        self.questions.append(question)
        judged = solution.split(D)[-1] if "last step" in question else solution
        p = 0.1 if "wrong" in judged else 0.9
        top = (("Yes", math.log(p)), ("No", math.log(1 - p)))
        usage = Usage(tokens_generated=1, engine_calls=1)
        return [Completion("Yes", 1, "length", usage, (TokenLogprob("Yes", top[0][1], top),))]


def early_error_script(eng):
    """Subtree 0 (its round-1 seed) takes a wrong second step, then fine-looking steps."""
    wrong_seed = derive_seed(0, 1, 0)

    def script(prefix, i):
        steps = steps_of(prefix)
        if not steps:
            return f"start{D}"
        if len(steps) == 1:
            return f"{'wrong' if eng.seed == wrong_seed else 'right'} step{D}"
        if len(steps) == 2:
            return f"fine step{D}"
        return f"so the answer is {7 if 'wrong' in prefix else 42}"

    return script


def test_last_aggregation_asks_the_judge_about_the_whole_prefix():
    # With aggregation="last" the last score stands for the path. Asked only about the last
    # paragraph, the judge gave the path with an early wrong step and a fine last step full
    # marks: a tie with the right path, won by the earlier subtree (answer 7).
    eng = JudgedEngine(None)
    eng.script = early_error_script(eng)
    r = run("dvts", eng, JudgeScorer(eng), 2, beam_width=1, select="best")
    assert set(eng.questions) == {
        "Is the solution so far correct, every step of it? Answer Yes or No."
    }
    leaves = {c.answer: c.score for c in r.candidates}
    assert leaves == pytest.approx({"7": 0.1, "42": 0.9})
    assert r.answer == "42"
    # other aggregations combine per-step judgements: the last-step question
    eng = JudgedEngine(None)
    eng.script = early_error_script(eng)
    r = run("dvts", eng, JudgeScorer(eng), 2, beam_width=1, select="best", aggregation="min")
    assert set(eng.questions) == {
        "Is the last step (the last paragraph) correct? Answer Yes or No."
    }
    assert r.answer == "42"


# ---- particle filter -----------------------------------------------------------------


def count_good(trace, particles):
    nodes = trace["nodes"]
    return sum("good" in path_text(nodes, p) for p in particles)


def test_particle_filter_concentrates_on_the_preferred_branch():
    # weights: logit(0.6) = -logit(0.4) = 0.405, so a good particle is 2.25x as likely to be
    # drawn as a bad one: after the first resampling P(good) = 2.25 / 3.25 = 0.692
    n, seeds = 16, range(10)
    first, third = [], []
    for seed in seeds:
        r = run("particle-filter", ScriptedEngine(branching), prefers_good(0.6, 0.4), n, seed=seed)
        events = r.trace["resampling"]
        assert [len(e["particles"]) for e in events] == [n] * len(events)
        first.append(count_good(r.trace, events[0]["particles"]) / n)
        third.append(count_good(r.trace, events[2]["particles"]) / n)
        assert r.answer == "42"
    # mean of 160 Bernoulli(0.692) draws: sd 0.0365
    assert abs(sum(first) / len(first) - 0.692) < 4 * 0.0365
    assert sum(third) / len(third) > 0.9


def test_particle_filter_groups_copies_into_one_request_and_accounts_usage():
    eng = CountingEngine(branching)
    r = run("particle-filter", eng, prefers_good(), 8)
    nodes = r.trace["nodes"]
    events = r.trace["resampling"]
    # round 0: one request with n = 8; later: one request per distinct unfinished particle
    assert eng.requests[0].n == 8 and eng.batches[0] == 1
    for e, batch in zip(events, eng.batches[1:], strict=False):
        assert batch == len({p for p in e["particles"] if not nodes[p]["finished"]})
    assert len(eng.batches) == len(events)
    assert sum(q.n for q in eng.requests) == len(nodes)
    assert r.usage.tokens_generated == total_tokens(r.trace)
    assert r.usage.scorer_calls == len(nodes)
    for e in events:  # ancestors index the pool, which holds this round's particles
        assert all(0 <= a < len(e["pool"]) for a in e["ancestors"])
        assert 1.0 <= e["ess"] <= len(e["pool"])
    check_tree(r.trace)


def early_bad(prefix, i):
    """Bad branch ends after its second step (answer 7); good goes on to 42."""
    steps = steps_of(prefix)
    if steps and "bad" in steps[0] and len(steps) == 1:
        return f"bad end, the answer is 7 ({i})"
    return branching(prefix, i)


def test_particle_filter_without_resampling_inactive_keeps_finished_particles():
    r = run("particle-filter", ScriptedEngine(early_bad), prefers_good(0.6, 0.4), 16,
            resample_inactive=False, seed=3)  # fmt: skip
    nodes = r.trace["nodes"]
    events = r.trace["resampling"]
    finished_bad = Counter(p for p in events[1]["particles"] if nodes[p]["finished"])
    assert finished_bad  # some bad particles ended in round 1 ...
    for e in events[1:]:
        # ... only unfinished particles are resampled (and only from unfinished ones) ...
        for i, p in enumerate(e["particles"]):
            assert nodes[p]["finished"] == (i not in e["slots"])
        # ... so the finished ones stay, each exactly as often as when it ended
        assert Counter(p for p in e["particles"] if "bad" in path_text(nodes, p)) == finished_bad
    sevens = [c.votes for c in r.candidates if c.answer == "7"]
    assert sevens == [finished_bad.total()] * len(finished_bad)  # votes: copies per answer


def test_particle_filter_resampling_inactive_can_drop_finished_particles():
    kept = []
    for seed in range(5):
        r = run("particle-filter", ScriptedEngine(early_bad), prefers_good(0.9, 0.1), 16,
                seed=seed)  # fmt: skip
        kept.append(sum(c.votes for c in r.candidates if c.answer == "7"))
    assert sum(kept) == 0  # bad finished particles (weight 1/81 of a good one) die out


def test_particle_filter_weighted_vote_and_score_weights():
    r = run("particle-filter", ScriptedEngine(branching), prefers_good(3.0, -1.0), 8,
            weights="score", select="weighted")  # fmt: skip
    assert r.answer == "42"
    with pytest.raises(ValueError, match="weights='logit' needs scores in"):
        run("particle-filter", ScriptedEngine(branching), prefers_good(3.0, -1.0), 8)


# ---- particle Gibbs ------------------------------------------------------------------


def test_particle_gibbs_keeps_a_reference_particle():
    eng = CountingEngine(branching)
    n = 4  # particles per sweep: the budget of 12 split over 3 iterations
    r = run("particle-gibbs", eng, prefers_good(0.6, 0.4), 12, iterations=3)
    its = r.trace["iterations"]
    assert [x["iteration"] for x in its] == [0, 1, 2]
    assert its[0]["reference"] is None
    for prev, cur in pairwise(its):
        # the reference is a final particle of the previous sweep, and survives this one
        assert cur["reference"] in prev["particles"]
        assert cur["particles"][-1] == cur["reference"] and len(cur["particles"]) == n
    # later sweeps generate only N - 1 free particles per round
    for e in r.trace["resampling"]:
        assert len(e["particles"]) == (n if e["iteration"] == 0 else n - 1)
        if e["iteration"] > 0:
            assert len(e["pool"]) == n  # free particles + the reference's prefix
    nodes = r.trace["nodes"]
    assert Counter(n_["iteration"] for n_ in nodes if n_["depth"] == 0) == {0: 4, 1: 3, 2: 3}
    assert r.answer == "42"
    assert r.usage.tokens_generated == total_tokens(r.trace)
    check_tree(r.trace)


# ---- A* ------------------------------------------------------------------------------

ASTAR_SCORES = {"a": 0.5, "b": 0.9, "c": 0.7, "so the answer is 42": 0.8, "c2": 0.6, "c3": 0.6}


def astar_script(prefix, i):
    steps = [s for s in prefix[len(Q) :].split(D) if s]
    last = steps[-1] if steps else None
    kids = {
        None: ["a", "b", "c"],
        "b": ["b1", "b2", "b3"],
        "c": ["so the answer is 42", "c2", "c3"],
    }.get(last, [f"{last}x"] * 3)
    return kids[i] + ("" if kids[i].startswith("so") else D)


def astar_scorer():
    return make_scorer(
        lambda problem, steps: ASTAR_SCORES.get(steps[-1].strip(), 0.3), process=True
    )


def test_astar_expands_in_score_order():
    eng = CountingEngine(astar_script)
    r = run("astar", eng, astar_scorer(), 3)
    nodes = r.trace["nodes"]
    # b (0.9) first; its children score min(0.9, 0.3) = 0.3, so c (0.7) next; then the
    # finished child of c (min 0.7) is the best node in the queue: the search stops
    assert [nodes[k]["text"].strip() for k in r.trace["expansions"]] == ["b", "c"]
    assert r.answer == "42"
    assert nodes[r.trace["goal"]]["text"] == "so the answer is 42"
    assert not any(n.get("expanded") is not None for n in nodes if n["text"].strip() == "a")
    assert eng.calls == 3 and [q.n for q in eng.requests] == [3, 3, 3]
    assert r.usage.scorer_calls == 9
    check_tree(r.trace)


def test_astar_batches_frontier_nodes():
    eng = CountingEngine(astar_script)
    r = run("astar", eng, astar_scorer(), 3, frontier_batch=2)
    nodes = r.trace["nodes"]
    assert [nodes[k]["text"].strip() for k in r.trace["expansions"]] == ["b", "c"]
    assert eng.calls == 2 and [q.n for q in eng.requests] == [3, 3, 3]
    assert r.answer == "42"


def test_astar_stops_when_the_token_budget_is_spent():
    eng = CountingEngine(astar_script)
    r = run("astar", eng, astar_scorer(), 3, token_budget=2)
    assert eng.calls == 1 and r.trace["goal"] is None
    # no solution ended: the best partial one is offered, marked as cut short
    assert r.best.text == "b" + D and r.best.finish_reason == "length"


def test_astar_per_sample_cap_does_not_bound_the_search():
    # The server sets Budget.max_tokens to the request's per-sample cap (6 here). A* used
    # it as its whole search budget and stopped after 6 tokens with no finished path; the
    # search budget is k x the cap (or Budget.total_tokens), the cap bounds one solution.
    eng = CountingEngine(astar_script)
    r = asyncio.run(create("astar").run(PROBLEM, eng, astar_scorer(), Budget(n=3, max_tokens=6)))
    assert r.trace["token_budget"] == 18
    assert r.answer == "42" and r.trace["goal"] is not None
    assert all(q.params.max_tokens <= 6 for q in eng.requests)
    r = asyncio.run(
        create("astar").run(
            PROBLEM, CountingEngine(astar_script), astar_scorer(), Budget(n=3, total_tokens=2)
        )
    )
    assert r.trace["token_budget"] == 2 and r.trace["goal"] is None
    with pytest.raises(ValueError, match="total_tokens budget must be >= 1"):
        Budget(n=3, total_tokens=0)


# ---- invalid configurations ----------------------------------------------------------


class OutcomeOnly:
    name = "outcome-only"

    async def score(self, problem, candidates):
        raise AssertionError("not called")


@pytest.mark.parametrize(
    "strategy", ["beam-search", "dvts", "particle-filter", "particle-gibbs", "astar"]
)
def test_search_needs_a_process_scorer(strategy):
    for scorer in (None, OutcomeOnly()):
        with pytest.raises(ValueError, match="needs a process scorer"):
            run(strategy, ScriptedEngine(branching), scorer, 4)


@pytest.mark.parametrize(
    ("strategy", "config", "message"),
    [
        ("beam-search", {"delimiter": ""}, "delimiter must be a non-empty"),
        ("beam-search", {"beam_width": 0}, "beam_width must be >= 1"),
        ("beam-search", {"lookahead": -1}, "lookahead must be >= 0"),
        ("beam-search", {"max_steps": 0}, "max_steps must be >= 1"),
        ("beam-search", {"max_step_tokens": 0}, "max_step_tokens must be >= 1"),
        ("beam-search", {"aggregation": "max"}, "aggregation must be one of"),
        ("particle-filter", {"finish_on": 5}, "finish_on must be text"),
        ("beam-search", {"select": "vote"}, "select must be one of"),
        ("dvts", {"beam_width": -2}, "beam_width must be >= 1"),
        ("particle-filter", {"softmax_temperature": 0}, "softmax_temperature must be > 0"),
        ("particle-filter", {"weights": "exp"}, "weights must be one of"),
        ("particle-filter", {"resampling": "stratified"}, "resampling must be one of"),
        ("particle-filter", {"temperature": -1}, "temperature must be >= 0"),
        ("particle-gibbs", {"iterations": 0}, "iterations must be >= 1"),
        ("astar", {"frontier_batch": 0}, "frontier_batch must be >= 1"),
        ("astar", {"token_budget": 0}, "token_budget must be >= 1"),
    ],
)
def test_invalid_config_is_a_clear_error(strategy, config, message):
    with pytest.raises(ValueError, match=message):
        create(strategy, **config)


@pytest.mark.parametrize("strategy", ["beam-search", "dvts"])
def test_beam_width_larger_than_budget_is_an_error(strategy):
    with pytest.raises(ValueError, match="beam_width 4 is larger than the budget 2"):
        run(strategy, ScriptedEngine(branching), prefers_good(), 2)


def test_particle_gibbs_needs_two_particles():
    with pytest.raises(ValueError, match="needs at least 2 particles: a budget of at least 4"):
        run("particle-gibbs", ScriptedEngine(branching), prefers_good(), 2)


def test_particle_gibbs_splits_one_budget_over_its_iterations():
    # its_hub's rule: budget 8 with 2 iterations is 4 particles per sweep, so particle Gibbs
    # generates as many first steps as particle filtering with the same budget
    eng = CountingEngine(branching)
    r = run("particle-gibbs", eng, prefers_good(0.6, 0.4), 8, iterations=2)
    roots = Counter(n_["iteration"] for n_ in r.trace["nodes"] if n_["depth"] == 0)
    assert roots == {0: 4, 1: 3}  # 4 particles, then 3 free ones beside the reference
    assert r.trace["particles"] == 4 and len(r.trace["iterations"][-1]["particles"]) == 4
    pf = run("particle-filter", CountingEngine(branching), prefers_good(0.6, 0.4), 8)
    assert sum(roots.values()) <= sum(n_["depth"] == 0 for n_ in pf.trace["nodes"])
    with pytest.raises(ValueError, match="must be a multiple of iterations; use a budget of 8"):
        run("particle-gibbs", ScriptedEngine(branching), prefers_good(), 9, iterations=2)


# ---- the real small model ------------------------------------------------------------

REAL = Problem.from_question("What is 12 + 30? Think step by step, then give the answer.")


def length_scorer():
    # a process score in [0, 1]: longer last steps score higher (cheap and deterministic)
    return make_scorer(lambda problem, steps: min(1.0, len(steps[-1]) / 80), process=True)


@pytest.mark.parametrize(
    ("strategy", "n", "config"),
    [
        ("beam-search", 4, {"beam_width": 2}),
        ("dvts", 4, {"beam_width": 2}),
        ("particle-filter", 4, {}),
        ("particle-gibbs", 4, {"iterations": 2}),
        ("astar", 3, {"frontier_batch": 2}),
    ],
)
def test_search_on_the_real_model(engine, strategy, n, config):
    cap = 24
    cfg = {"max_steps": 2, "max_step_tokens": 12, "max_tokens": cap, "delimiter": "\n", **config}
    r = asyncio.run(create(strategy, **cfg).run(REAL, engine, length_scorer(), Budget(n=n)))
    check_tree(r.trace)
    nodes = r.trace["nodes"]
    assert r.usage.tokens_generated == total_tokens(r.trace)
    assert r.usage.scorer_calls == len(nodes)
    assert all(n_["tokens"] <= 12 for n_ in nodes if n_["depth"] == 0)
    assert all(c.tokens <= cap for c in r.candidates)
    # later rounds continue cached prefixes: most prompt tokens come from the cache
    assert r.usage.prompt_tokens_cached > r.usage.prompt_tokens_computed
    assert r.best is not None and r.best.text
