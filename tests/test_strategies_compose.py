"""answer-convergence, self-refine, fusion, generate-rank-fuse and pairwise-rank against a
scripted engine (exact control flow) and end to end on the small real model."""

import asyncio
import json
import math
import re
from dataclasses import replace

import pytest
from scripted import ScriptedEngine

from ponder.strategies import create
from ponder.strategies.common import usage_of
from ponder.strategies.fusion import parse_ranking
from ponder.strategies.self_refine import CRITIQUE_PROMPT, REFINE_PROMPT
from ponder.types import Budget, Problem, TokenLogprob, Usage

PROBLEM = Problem.from_question("What is 6 times 7?")
CRITIQUE = CRITIQUE_PROMPT.format(stop_phrase="ALL CORRECT")
JUDGE_RE = re.compile(r"Response A:\n(.*?)\n\nResponse B:\n(.*?)\n\nWhich", re.S)


class Recording(ScriptedEngine):
    """A scripted engine that records each ``generate`` call and the usage it returned,
    and answers judge requests (``top_logprobs > 0``) with P(A) from ``prefer``."""

    def __init__(self, script, prefer=None, **kw):
        super().__init__(script, **kw)
        self.calls = []
        self.total = Usage()
        self.prefer = prefer

    async def generate(self, requests):
        self.calls.append(list(requests))
        out = await super().generate(requests)
        self.total = self.total + usage_of(out)
        return out

    def _one(self, r):
        out = super()._one(r)
        if r.params.top_logprobs and self.prefer is not None:
            a, b = JUDGE_RE.search(self.prefix_text(r)).groups()
            p = self.prefer(a, b)
            top = ((" A", math.log(p)), (" B", math.log(1 - p)))
            out = [replace(c, logprobs=(TokenLogprob(c.text, top[0][1], top),)) for c in out]
        return out


def run(strategy, engine, n, problem=PROBLEM, **config):
    return asyncio.run(create(strategy, **config).run(problem, engine, None, Budget(n=n)))


def probe_prefixes(eng):
    return [r for call in eng.calls for r in call if r.partial.endswith("Final answer:")]


# ---- answer-convergence ------------------------------------------------------------------


def chunk_script(answers, finish_after=None):
    """Reasoning chunks are "zz" words; the forced answer after chunk c is answers[c-1]."""

    def script(prefix, i):
        done = -(-prefix.count("zz") // 4)  # chunks so far (the last may be short)
        if prefix.endswith("Final answer:"):
            return f" {answers[done - 1]}\nand more"
        if finish_after is not None and done >= finish_after:
            return "Done: 4"
        return "zz " * 50

    return script


def test_answer_convergence_stops_after_k_agreeing_probes():
    eng = Recording(chunk_script(["5", "7", "7", "8", "8", "8", "9", "9", "9"]))
    r = run("answer-convergence", eng, 1, chunk_tokens=4, k=3, max_tokens=400)
    assert r.answer == "8"
    assert r.trace["chunks"] == 6 and r.trace["probes"] == 6
    assert r.trace["status"] == ["converged"]
    assert [rd["traces"][0]["streak"] for rd in r.trace["rounds"]] == [1, 1, 2, 1, 2, 3]
    chunk_reqs = [q for call in eng.calls for q in call if q not in probe_prefixes(eng)]
    assert [q.params.max_tokens for q in chunk_reqs] == [4] * 6
    assert all(q.params.temperature == 0 for q in probe_prefixes(eng))
    assert r.best.tokens == 6 * 4 + 1 and r.best.text.endswith("Final answer: 8")
    assert r.usage == eng.total and r.usage.engine_calls == 12


def test_answer_convergence_keeps_a_naturally_finished_trace():
    eng = Recording(chunk_script(["1", "2", "1"], finish_after=2))
    r = run("answer-convergence", eng, 1, chunk_tokens=4, k=2)
    assert r.trace["status"] == ["finished"]
    assert r.trace["chunks"] == 3 and r.trace["probes"] == 2
    assert r.answer == "4" and r.best.text.endswith("Done: 4")


def test_answer_convergence_caps_reasoning_at_max_tokens():
    eng = Recording(chunk_script(["1", "2", "3", "4", "5"]))
    r = run("answer-convergence", eng, 1, chunk_tokens=4, k=2, max_tokens=10)
    assert r.trace["status"] == ["capped"]
    chunk_reqs = [q for call in eng.calls for q in call if q not in probe_prefixes(eng)]
    assert [q.params.max_tokens for q in chunk_reqs] == [4, 4, 2]
    assert r.answer == "3" and r.best.finish_reason == "length"


def test_answer_convergence_probe_skips_a_line_break_after_the_cue():
    # this model answers "Final answer:\n42": a probe cut at the first "\n" was empty, the
    # streak never grew and the trace ran to its cap
    def script(prefix, i):
        if prefix.endswith("Final answer:"):
            return "\n\n42\nbecause"
        if prefix.endswith("Final answer:\n") or prefix.endswith("Final answer:\n\n"):
            return "42\nbecause" if prefix.endswith("\n\n") else "\n42\nbecause"
        return "zz " * 50

    eng = Recording(script)
    r = run("answer-convergence", eng, 1, chunk_tokens=4, k=2, max_tokens=400)
    assert r.trace["status"] == ["converged"] and r.answer == "42"
    assert r.trace["chunks"] == 2 and r.trace["probes"] == 2
    assert [x["traces"][0]["probe"] for x in r.trace["rounds"]] == ["\n\n42"] * 2
    assert r.best.text.endswith("Final answer:\n\n42")
    assert r.usage == eng.total


def test_answer_convergence_batches_traces_and_votes():
    def script(prefix, i):
        done = prefix.count("zz") // 4
        if prefix.endswith("Final answer:"):
            seq = ["3", "3", "3"] if "aa" in prefix else ["1", "3", "3", "3"]
            return f" {seq[done - 1]}"
        if done == 0:  # the first chunk tells the two traces apart
            return "zz zz zz " + ("aa" if i == 0 else "bb") + "zz " * 20
        return "zz " * 50

    eng = Recording(script)
    r = run("answer-convergence", eng, 2, chunk_tokens=4, k=3)
    assert [len(call) for call in eng.calls] == [1, 2, 2, 2, 2, 2, 1, 1]
    assert eng.calls[0][0].n == 2
    assert r.trace["status"] == ["converged", "converged"]
    assert r.answer == "3" and [c.votes for c in r.candidates] == [2, 2]
    assert r.trace["chunks"] == 7 and r.usage == eng.total


# ---- self-refine -------------------------------------------------------------------------


def refine_script(correct_at=3):
    def script(prefix, i):
        if prefix.endswith(REFINE_PROMPT):
            return f"Revised: the answer is {10 + prefix.count(REFINE_PROMPT)}"
        if prefix.endswith(CRITIQUE):
            return "ALL CORRECT" if prefix.count(CRITIQUE) >= correct_at else "Wrong; recompute."
        return f"Draft: the answer is {i + 1}"

    return script


def test_self_refine_stops_at_the_stop_phrase():
    eng = Recording(refine_script(correct_at=3))
    r = run("self-refine", eng, 1)
    assert r.answer == "12"
    assert [len(call) for call in eng.calls] == [1] * 6  # draft, (critique, revise) x2, critique
    chains = [rd["chains"][0] for rd in r.trace["rounds"][1:]]
    assert [c["correct"] for c in chains] == [False, False, True]
    assert [c["revision"] for c in chains] == [
        "Revised: the answer is 11",
        "Revised: the answer is 12",
        None,
    ]
    assert r.trace["rounds"][0]["drafts"] == ["Draft: the answer is 1"]
    # With history, the last critique sees the first draft and both earlier critiques.
    last = eng.calls[-1][0]
    assert last.prefix[1]["content"] == "Draft: the answer is 1"
    assert sum(m["content"] == CRITIQUE for m in last.prefix) == 3
    assert r.usage == eng.total


def test_self_refine_respects_rounds_and_history_off():
    eng = Recording(refine_script(correct_at=99))
    r = run("self-refine", eng, 1, rounds=2, history=False)
    assert len(r.trace["rounds"]) == 3 and r.answer == "11"
    second_critique = eng.calls[3][0]
    assert [m["content"] for m in second_critique.prefix] == [
        "What is 6 times 7?",
        "Revised: the answer is 11",
        CRITIQUE,
    ]


def test_self_refine_runs_chains_in_batches():
    def script(prefix, i):
        if prefix.endswith(REFINE_PROMPT):
            return "Revised: the answer is 7"
        if prefix.endswith(CRITIQUE):
            return "ALL CORRECT" if "answer is 7" in prefix else "Wrong."
        return f"Draft: the answer is {[7, 3, 5][i]}"

    eng = Recording(script)
    r = run("self-refine", eng, 3)
    # drafts (one request, n=3); 3 critiques; 2 revisions; 2 critiques
    assert [len(call) for call in eng.calls] == [1, 3, 2, 2]
    assert eng.calls[0][0].n == 3
    assert r.answer == "7" and [c.votes for c in r.candidates] == [3, 3, 3]


@pytest.mark.parametrize(
    ("critique", "verdict"),
    [
        ("ALL CORRECT", True),
        ("**ALL CORRECT**.", True),
        ("The draft checks out.\n\nALL CORRECT", True),
        ("ALL CORRECT\nNothing to fix.", True),
        ("The answer is not ALL CORRECT: step 2 is wrong.", False),
        ("Step 2 is wrong, so it is not ALL CORRECT", False),
        ("Is it ALL CORRECT? No.", False),
        ("all correct", False),
        ("", False),
    ],
)
def test_self_refine_stops_only_on_the_stop_phrase_as_a_verdict(critique, verdict):
    def script(prefix, i):
        if prefix.endswith(REFINE_PROMPT):
            return "Revised: the answer is 42"
        if prefix.endswith(CRITIQUE):
            return critique if prefix.count(CRITIQUE) == 1 else "ALL CORRECT"
        return "Draft: the answer is 41"

    r = run("self-refine", Recording(script), 1)
    first = r.trace["rounds"][1]["chains"][0]
    assert first["correct"] is verdict
    assert r.answer == ("41" if verdict else "42")


def test_self_refine_zero_rounds_keeps_the_draft():
    eng = Recording(refine_script())
    r = run("self-refine", eng, 1, rounds=0)
    assert r.answer == "1" and len(eng.calls) == 1


# ---- fusion / generate-rank-fuse -----------------------------------------------------------


def fusion_script(prefix, i):
    if "candidate responses" in prefix:
        layer = prefix.count("Fused")
        return f"Fused{i} L{layer}: the answer is 42"
    return f"Candidate {i}: the answer is {40 + i}"


def test_fusion_final_prompt_contains_every_candidate():
    eng = Recording(fusion_script)
    r = run("fusion", eng, 3)
    assert [len(call) for call in eng.calls] == [1, 1]
    final = eng.prefix_text(eng.calls[1][0])
    for i in range(3):
        assert f"[{i + 1}] Candidate {i}: the answer is {40 + i}" in final
    assert eng.calls[1][0].n == 1
    assert r.answer == "42" and r.best.text.startswith("Fused0 L0")
    assert len(r.candidates) == 4 and r.candidates[-1] == r.best
    assert [rd["stage"] for rd in r.trace["rounds"]] == ["generate", "aggregate"]
    assert r.usage == eng.total


def test_fusion_layers_stack_aggregations():
    eng = Recording(fusion_script)
    r = run("fusion", eng, 3, layers=2)
    assert [q.n for call in eng.calls for q in call] == [3, 3, 1]
    final = eng.prefix_text(eng.calls[2][0])
    assert all(f"Fused{i} L0" in final for i in range(3))
    assert "Candidate 0" not in final
    assert r.best.text.startswith("Fused0 L3")


def test_fusion_needs_a_question_to_restate():
    eng = Recording(fusion_script)
    odd = Problem("p", ({"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}))
    with pytest.raises(ValueError, match="must end with a user message"):
        run("fusion", eng, 2, problem=odd)
    assert eng.calls == []


def test_generate_rank_fuse_keeps_the_ranked_top():
    def script(prefix, i):
        if "Rank the responses" in prefix:
            return "[3] > [1] > [9] > [2]"
        return fusion_script(prefix, i)

    eng = Recording(script)
    r = run("generate-rank-fuse", eng, 4, keep=2)
    assert [len(call) for call in eng.calls] == [1, 1, 1]
    assert eng.calls[1][0].params.temperature == 0
    fuse_prompt = eng.prefix_text(eng.calls[2][0])
    assert "[1] Candidate 2" in fuse_prompt and "[2] Candidate 0" in fuse_prompt
    assert "Candidate 1" not in fuse_prompt and "Candidate 3" not in fuse_prompt
    stages = [(rd["stage"], rd.get("order"), rd.get("fused")) for rd in r.trace["rounds"]]
    assert stages == [
        ("generate", None, None),
        ("rank", [2, 0, 1, 3], None),
        ("fuse", None, [2, 0]),
    ]
    assert r.answer == "42" and r.usage == eng.total


def quality(text):
    return float(re.search(r"quality (\d+)", text).group(1))


def prefer_quality(a, b):
    # The judge prefers higher quality, with a strong bias for whatever is shown first.
    return 1 / (1 + math.exp(-(quality(a) - quality(b) + 1.5)))


def test_generate_rank_fuse_with_pairwise_ranker_and_several_fusions():
    qs = [2, 9, 5]

    def script(prefix, i):
        if "Which response answers" in prefix:
            return "A"
        if "candidate responses" in prefix:
            return f"Fused {i} quality {[1, 8][i]}: the answer is {[41, 42][i]}"
        return f"Candidate {i} quality {qs[i]}: the answer is 7"

    eng = Recording(script, prefer=prefer_quality)
    r = run("generate-rank-fuse", eng, 3, keep=2, fusions=2, ranker="pairwise")
    # generate; judge 3 pairs x 2 orders; fuse (n=2); judge the 2 fusions x 2 orders
    assert [len(call) for call in eng.calls] == [1, 6, 1, 2]
    fuse_prompt = eng.prefix_text(eng.calls[2][0])
    assert fuse_prompt.index("Candidate 1") < fuse_prompt.index("Candidate 2")
    assert "Candidate 0" not in fuse_prompt
    assert r.trace["chosen"] == 1 and r.answer == "42"


def test_parse_ranking():
    assert parse_ranking("[2] > [3] > [1]", 3) == [1, 2, 0]
    assert parse_ranking("I think 3 is best, then 3 again, then 7", 3) == [2, 0, 1]
    assert parse_ranking("no idea", 2) == [0, 1]
    assert parse_ranking("[3] (it says 1 + 1 = 2) > [1]", 3) == [2, 0, 1]


# ---- pairwise-rank -----------------------------------------------------------------------


def test_pairwise_rank_orders_by_the_judges_preferences_in_both_orders():
    qs = [2, 5, 1, 3]

    def script(prefix, i):
        if "Which response answers" in prefix:
            return "A"
        return f"Candidate {i} quality {qs[i]}: the answer is {40 + i}"

    eng = Recording(script, prefer=prefer_quality)
    r = run("pairwise-rank", eng, 4)
    assert [len(call) for call in eng.calls] == [1, 12]
    shown = []
    for q in eng.calls[1]:
        a, b = JUDGE_RE.search(eng.prefix_text(q)).groups()
        shown.append((int(a.split()[1]), int(b.split()[1])))
        assert q.params.max_tokens == 1 and q.params.top_logprobs == 20
        assert q.params.temperature == 0
    assert sorted(shown) == sorted((i, j) for i in range(4) for j in range(4) if i != j)
    scores = r.trace["scores"]
    assert sorted(range(4), key=lambda i: -scores[i]) == [1, 3, 0, 2]
    assert r.answer == "41" and r.best.score == max(scores)
    assert r.trace["best_index"] == 1 and len(r.trace["comparisons"]) == 6
    assert r.usage == eng.total


def test_pairwise_rank_uses_a_round_robin_beyond_max_all_pairs():
    qs = [4, 1, 6, 2, 9, 3]

    def script(prefix, i):
        if "Which response answers" in prefix:
            return "A"
        return f"Candidate {i} quality {qs[i]}: the answer is {40 + i}"

    eng = Recording(script, prefer=prefer_quality)
    r = run("pairwise-rank", eng, 6, max_all_pairs=4, opponents=2)
    assert [len(call) for call in eng.calls] == [1, 24]
    assert r.answer == "44"


def test_pairwise_rank_with_one_candidate_asks_no_judge():
    eng = Recording(lambda prefix, i: "The answer is 3", prefer=prefer_quality)
    r = run("pairwise-rank", eng, 1)
    assert len(eng.calls) == 1 and r.answer == "3" and r.trace["comparisons"] == []


def test_pairwise_rank_needs_logprobs():
    eng = Recording(lambda prefix, i: "x", logprobs=False)
    with pytest.raises(ValueError, match="log-probabilities"):
        run("pairwise-rank", eng, 2)
    with pytest.raises(ValueError, match="log-probabilities"):
        run("generate-rank-fuse", eng, 2, ranker="pairwise")


@pytest.mark.parametrize(
    ("strategy", "config", "message"),
    [
        ("answer-convergence", {"k": 1}, "k must be >= 2"),
        ("answer-convergence", {"chunk_tokens": 0}, "chunk_tokens"),
        ("answer-convergence", {"answer_prompt": " \n"}, "answer_prompt"),
        ("answer-convergence", {"probe_tokens": 0}, "probe_tokens"),
        ("self-refine", {"rounds": -1}, "rounds"),
        ("self-refine", {"stop_phrase": " "}, "stop_phrase"),
        ("self-refine", {"temperature": -1}, "temperature"),
        ("fusion", {"layers": 0}, "layers"),
        ("generate-rank-fuse", {"keep": 0}, "keep"),
        ("generate-rank-fuse", {"fusions": 0}, "fusions"),
        ("generate-rank-fuse", {"ranker": "vibes"}, "ranker"),
        ("generate-rank-fuse", {"layers": 2}, "fusions >= 2"),
        ("generate-rank-fuse", {"rank_max_tokens": 0}, "rank_max_tokens"),
        ("pairwise-rank", {"max_all_pairs": 0}, "max_all_pairs"),
        ("pairwise-rank", {"opponents": 0}, "opponents"),
        ("pairwise-rank", {"prior": -0.1}, "prior"),
        ("pairwise-rank", {"judge": "x"}, "no setting"),
    ],
)
def test_invalid_configs_raise(strategy, config, message):
    with pytest.raises(ValueError, match=message):
        create(strategy, **config)


# ---- end to end on the real model ----------------------------------------------------------


class Recorder:
    """Passes requests to a real engine and adds up the usage of what comes back."""

    def __init__(self, engine):
        self.engine = engine
        self.name = engine.name
        self.capabilities = engine.capabilities
        self.calls = 0
        self.total = Usage()

    async def generate(self, requests):
        out = await self.engine.generate(requests)
        self.calls += 1
        self.total = self.total + usage_of(out)
        return out


E2E = [
    ("answer-convergence", 2, {"chunk_tokens": 8, "k": 2, "max_tokens": 24, "probe_tokens": 6}),
    ("self-refine", 2, {"rounds": 1, "max_tokens": 12}),
    ("fusion", 2, {"max_tokens": 12}),
    ("generate-rank-fuse", 2, {"keep": 1, "max_tokens": 12, "rank_max_tokens": 8}),
    ("pairwise-rank", 2, {"max_tokens": 12}),
]


@pytest.mark.parametrize(("strategy", "n", "config"), E2E, ids=[s for s, _, _ in E2E])
def test_end_to_end_on_the_real_model(engine, strategy, n, config):
    rec = Recorder(engine)
    q = Problem.from_question("Think step by step: what is 12 times 3?")
    r = run(strategy, rec, n, problem=q, **config)
    assert r.usage == rec.total and r.usage.engine_calls >= rec.calls >= 2
    assert r.usage.tokens_generated > 0
    assert r.best is not None and r.best in r.candidates
    assert len(r.candidates) >= n
    assert r.trace["kind"] in {"rounds", "samples"}
    if r.trace["kind"] == "rounds":
        assert r.trace["rounds"] and all(isinstance(rd, dict) for rd in r.trace["rounds"])
    json.dumps(r.as_dict())
