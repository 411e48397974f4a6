"""Tests for ponder.scoring.judge: P(Yes) maths on fake engines, batching on the real model."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from ponder.engines.base import Capabilities
from ponder.scoring import create_scorer, require_outcome, require_process
from ponder.scoring.judge import (
    INLINE_OUTCOME,
    INLINE_PREFIX,
    INLINE_PROCESS,
    OUTCOME_TEMPLATE,
    JudgeScorer,
    yes_probability,
)
from ponder.types import Completion, Problem, Request, SamplingParams, TokenLogprob, Usage

PROBLEM = Problem.from_question("What is 2 + 3?", system="Be brief.")


class TopEngine:
    """Answers every request with one token whose top alternatives come from ``top(prompt)``."""

    name = "top-fake"

    def __init__(
        self, top: Callable[[str], list[tuple[str, float]]], logprobs: bool = True
    ) -> None:
        self.top = top
        self.calls: list[list[Request]] = []
        self._logprobs = logprobs

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(self._logprobs, prefix_cache=False, max_parallel=8, max_context=4096)

    async def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        self.calls.append(list(requests))
        out = []
        for r in requests:
            assert not isinstance(r.prefix, str)
            prompt = r.prefix[-1]["content"]
            top = tuple(self.top(prompt))
            token, logprob = top[0] if top else ("?", 0.0)
            lp = TokenLogprob(token, logprob, top)
            usage = Usage(tokens_generated=1, prompt_tokens_computed=10, engine_calls=1)
            out.append([Completion(token, 1, "length", usage, (lp,), 10)])
        return out


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def content(request: Request) -> str:
    """The text of the judge's (single) user message."""
    assert not isinstance(request.prefix, str) and len(request.prefix) == 1
    return request.prefix[0]["content"]


def test_yes_probability_sums_spellings_and_normalises() -> None:
    top = (
        ("Yes", math.log(0.3)),
        (" yes", math.log(0.1)),
        ("\u2581YES", math.log(0.05)),
        ("No", math.log(0.15)),
        (" no", math.log(0.05)),
        ("Maybe", math.log(0.35)),
    )
    p = yes_probability(TokenLogprob("Maybe", math.log(0.35), top))
    assert p == pytest.approx(0.45 / 0.65, abs=1e-12)


def test_yes_probability_uses_the_sampled_token_and_ignores_lookalikes() -> None:
    only_sampled = TokenLogprob(" Yes", math.log(0.2), ())
    assert yes_probability(only_sampled) == 1.0
    lookalikes = (("Yesterday", -0.1), ("Nope", -0.2), ("yes!", -0.3))
    assert yes_probability(TokenLogprob("Yesterday", -0.1, lookalikes)) is None
    assert yes_probability(None) is None


def test_outcome_scores_are_exact_and_come_from_one_batched_call() -> None:
    def top(prompt: str) -> list[tuple[str, float]]:
        if "seven" in prompt:
            return [("No", math.log(0.6)), ("Yes", math.log(0.2)), ("The", math.log(0.1))]
        if "five" in prompt:
            return [("Yes", math.log(0.7)), (" No", math.log(0.1))]
        return [("Hmm", math.log(0.9))]

    engine = TopEngine(top)
    judge = JudgeScorer(engine)
    scores = run(judge.score(PROBLEM, ["It is five.", "It is seven.", "No idea"]))
    assert scores.values == pytest.approx((0.7 / 0.8, 0.2 / 0.8, 0.5), abs=1e-12)
    assert judge.undecided == 1
    assert len(engine.calls) == 1 and len(engine.calls[0]) == 3
    request = engine.calls[0][0]
    assert request.params.temperature == 0 and request.params.max_tokens == 1
    assert request.params.logprobs and request.params.top_logprobs == 20
    assert content(request) == OUTCOME_TEMPLATE.format(
        question="What is 2 + 3?", solution="It is five."
    )
    assert scores.usage.scorer_calls == 3
    assert scores.usage.engine_calls == 3 and scores.usage.tokens_generated == 3


def judge_prompts(judge, partials):
    engine = judge.engine
    before = len(engine.calls)
    run(judge.score_steps(PROBLEM, partials))
    return engine.calls[before]


def test_process_prompt_shows_previous_steps_and_the_last_step() -> None:
    engine = TopEngine(lambda prompt: [("Yes", math.log(0.5)), ("No", math.log(0.5))])
    judge = JudgeScorer(engine)
    partials = [["Add them.\n\n"], ["Add them.\n\n", "2 + 3 = 5.\n\n", "So 5."]]
    scores = run(judge.score_steps(PROBLEM, partials))
    assert scores.values == (0.5, 0.5)
    assert len(engine.calls) == 1
    first, second = (content(r) for r in engine.calls[0])
    assert "Solution so far:\nAdd them.\n\nIs the last step" in first
    assert "Solution so far:\nAdd them.\n\n2 + 3 = 5.\n\nSo 5.\n\nIs the last step" in second
    assert second.endswith("Is the last step (the last paragraph) correct? Answer Yes or No.")
    # Append-only: the judge prompt of a path's next step extends the previous one up to
    # the end of the previous step, so the prefix cache serves all but the new step.
    shorter = content(judge_prompts(judge, [["Add them.\n\n", "2 + 3 = 5.\n\n"]])[0])
    cut = shorter.index("2 + 3 = 5.") + len("2 + 3 = 5.\n\n")
    assert second.startswith(shorter[:cut])
    with pytest.raises(ValueError, match="no steps"):
        run(judge.score_steps(PROBLEM, [["ok"], []]))


def test_prefix_prompt_asks_about_the_whole_solution_so_far() -> None:
    # The search's aggregation="last" takes the last score as the path's: the question
    # must be about every step, not the last paragraph (an early error must count).
    engine = TopEngine(lambda prompt: [("Yes", math.log(0.5)), ("No", math.log(0.5))])
    judge = JudgeScorer(engine)
    steps = ["Add them.\n\n", "2 + 3 = 5.\n\n", "So 5."]
    scores = run(judge.score_prefixes(PROBLEM, [steps[:2], steps]))
    assert scores.values == (0.5, 0.5) and scores.usage.scorer_calls == 2
    assert len(engine.calls) == 1
    shorter, longer = (content(r) for r in engine.calls[0])
    assert longer.endswith("Is the solution so far correct, every step of it? Answer Yes or No.")
    assert "last step" not in longer
    # append-only, like the process question: the longer path's prompt extends the shorter
    # one's up to the end of the shared steps, so the prefix cache serves it
    cut = shorter.index("2 + 3 = 5.") + len("2 + 3 = 5.\n\n")
    assert longer.startswith(shorter[:cut])
    # and it shares the process question's prefix too (same layout, same fields)
    process = content(judge_prompts(judge, [steps])[0])
    assert process[: process.index("Is the last")] == longer[: longer.index("Is the solution")]
    with pytest.raises(ValueError, match="lacks"):
        JudgeScorer(TopEngine(lambda p: []), prefix_template="Right? {solution}")


def test_long_solutions_keep_their_end() -> None:
    engine = TopEngine(lambda prompt: [("Yes", 0.0)])
    judge = JudgeScorer(engine, max_chars=10)
    run(judge.score(PROBLEM, ["x" * 100 + "ANSWER: 5"]))
    prompt = content(engine.calls[0][0])
    assert "xANSWER: 5" in prompt and "x" * 12 not in prompt


def test_configuration_errors() -> None:
    with pytest.raises(ValueError, match="log-probabilities"):
        JudgeScorer(TopEngine(lambda p: [], logprobs=False))
    with pytest.raises(ValueError, match="needs an engine"):
        create_scorer("judge", None)
    with pytest.raises(ValueError, match="top_logprobs"):
        JudgeScorer(TopEngine(lambda p: []), top_logprobs=0)
    with pytest.raises(ValueError, match="lacks"):
        JudgeScorer(TopEngine(lambda p: []), outcome_template="Is it right? {solution}")
    no_user = Problem("p", ({"role": "system", "content": "x"},))
    with pytest.raises(ValueError, match="no user message"):
        run(JudgeScorer(TopEngine(lambda p: [])).score(no_user, ["a"]))


def test_inline_questions_follow_the_solvers_own_conversation() -> None:
    # inline: the candidate stays the assistant's reply to the problem's own messages, as
    # written (not stripped, not clipped), and the question is the next user turn; so the
    # rendered prompt extends what the sampler just computed, up to the question.
    engine = TopEngine(lambda q: [("Yes", math.log(0.6)), ("No", math.log(0.2))])
    judge = create_scorer("judge", engine, inline=True, max_chars=5)
    steps = ["Add them.\n\n", "2 + 3 = 5.\n\n"]
    for method, question, texts in (
        (judge.score, INLINE_OUTCOME, [" It is five, a long answer.\n"]),
        (judge.score_steps, INLINE_PROCESS, ["Add them.\n\n2 + 3 = 5.\n\n"]),
        (judge.score_prefixes, INLINE_PREFIX, ["Add them.\n\n2 + 3 = 5.\n\n"]),
    ):
        before = len(engine.calls)
        given = texts if method == judge.score else [steps]
        scores = run(method(PROBLEM, given))
        assert scores.values == pytest.approx((0.75,), abs=1e-12)
        assert scores.usage.scorer_calls == 1
        [request] = engine.calls[before]
        assert request.prefix == (
            *PROBLEM.messages,
            {"role": "assistant", "content": texts[0]},
            {"role": "user", "content": question},
        )
        assert request.partial == "" and request.params.max_tokens == 1
    assert "last step" in INLINE_PROCESS and "every step" in INLINE_PREFIX
    custom = JudgeScorer(engine, inline=True, inline_prefix="All good so far?")
    run(custom.score_prefixes(PROBLEM, [steps]))
    assert engine.calls[-1][0].prefix[-1]["content"] == "All good so far?"
    # without inline, nothing changes: one user message
    run(JudgeScorer(engine).score_prefixes(PROBLEM, [steps]))
    assert len(engine.calls[-1][0].prefix) == 1
    with pytest.raises(ValueError, match="no steps"):
        run(judge.score_prefixes(PROBLEM, [steps, []]))
    with pytest.raises(ValueError, match="inline must be true or false"):
        JudgeScorer(engine, inline="yes")
    with pytest.raises(ValueError, match="inline_outcome must be a non-empty question"):
        JudgeScorer(engine, inline=True, inline_outcome="  ")


def test_registered_as_both_kinds_of_scorer() -> None:
    judge = create_scorer("judge", TopEngine(lambda p: []), top_logprobs=5)
    assert isinstance(judge, JudgeScorer) and judge.params.top_logprobs == 5
    assert require_outcome(judge, "best-of-n") is judge
    assert require_process(judge, "beam-search") is judge


class CountingEngine:
    """Wraps a real engine and records each ``generate`` call's batch size."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.batches: list[int] = []

    @property
    def capabilities(self) -> Capabilities:
        caps: Capabilities = self.inner.capabilities
        return caps

    async def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        self.batches.append(len(requests))
        result: list[list[Completion]] = await self.inner.generate(requests)
        return result


def test_real_model_outcome_and_process(engine: Any) -> None:
    counting = CountingEngine(engine)
    judge = create_scorer("judge", counting)
    texts = ["2 + 3 = 5. The answer is 5.", "2 + 3 = 7. The answer is 7.", "I like turtles."]
    scores = run(judge.score(PROBLEM, texts))
    assert counting.batches == [3]
    assert len(scores.values) == 3 and all(0.0 <= v <= 1.0 for v in scores.values)
    assert scores.usage.tokens_generated == 3 and scores.usage.scorer_calls == 3
    # The small model does put its first token on Yes or No for this prompt.
    assert judge.undecided == 0

    partials = [["2 + 3 = 5.\n\n"], ["First add.\n\n", "2 + 3 = 7.\n\n"]]
    steps = run(judge.score_steps(PROBLEM, partials))
    assert counting.batches == [3, 2]
    assert len(steps.values) == 2 and all(0.0 <= v <= 1.0 for v in steps.values)
    whole = run(judge.score_prefixes(PROBLEM, partials))
    assert counting.batches == [3, 2, 2]
    assert len(whole.values) == 2 and all(0.0 <= v <= 1.0 for v in whole.values)


def test_real_model_inline_judge_reuses_the_solvers_cache(engine: Any) -> None:
    # The point of inline: right after the sampler wrote a solution, judging it computes
    # only the question's tokens; the judge asked apart computes the solution again.
    problem = Problem.from_question("Count from one to twenty in words, with commas.")
    params = SamplingParams(temperature=0.0, max_tokens=40)
    [[solution]] = run(engine.generate([Request(problem.messages, params)]))
    assert solution.tokens >= 8
    inline = run(create_scorer("judge", engine, inline=True).score(problem, [solution.text]))
    apart = run(create_scorer("judge", engine).score(problem, [solution.text]))
    assert 0.0 <= inline.values[0] <= 1.0
    # all of the prompt and the solution but its last token or so come from the cache
    assert inline.usage.prompt_tokens_cached >= solution.prompt_tokens + solution.tokens - 2
    assert inline.usage.prompt_tokens_computed < 30
    assert inline.usage.prompt_tokens_computed < apart.usage.prompt_tokens_computed
