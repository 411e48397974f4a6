"""its_hub's particle filtering over a list of problems, for ``ponder bench its-hub``.

Runs in the peers' venv (``make peers``), where ponder is not installed: it imports only
its_hub and the standard library. Reads one JSON object, on one line, on stdin::

    {"endpoint": "http://127.0.0.1:PORT/v1", "model": NAME, "particles": N,
     "delimiter": "\\n\\n", "stop_token": "The answer is", "max_steps": M,
     "step_tokens": T, "judge_tokens": J, "judge_format": "schema", "temperature": 0.8,
     "seed": S, "sampling": {"top_k": 0, "top_p": 1.0, "min_p": 0.0} or null,
     "problems": [{"id": ID, "prompt": TEXT}, ...]}

then, for each problem, waits for a line on stdin (the bench reads llama-server's counters
while the server is idle, then says go) and prints one JSON line as the problem finishes:
``{"id", "answer", "seconds", "steps", "judge_fallbacks", "particle_steps",
"log_weights"}`` (``answer``: the text of the particle its_hub selects, ``steps`` its
steps; ``particle_steps`` and ``log_weights``: every final particle's steps and
log-weight, the inverse sigmoid of its last judge score, so a ledger shows how a search
ended). It stops early at the end of its stdin.

its_hub 1.2.0 has no LLM-judge *process* reward model: its ``LLMJudge`` is an outcome
reward model (a 0-10 score, asked for as JSON). ``JudgeAsProcessReward`` puts it where
``ParticleFiltering`` wants one: each partial solution is judged as the assistant's reply
so far, and the score divided by 10 is the step's reward in [0, 1] (which its_hub then
turns into a log-weight by the inverse sigmoid). ``judge_format``: the judge's
``response_format``, its own default (``schema``: a JSON schema with the score first, held
by the server's grammar), ``object`` (any JSON object) or ``none`` (the prompt alone).

llama-server answers a continued assistant message with the whole message, the text it
was given followed by the new text, where vLLM (which its_hub is written against) answers
with the new text alone; ``ContinuingModel`` removes the repeated part so that each of
its_hub's steps is the new text only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
import time
import warnings
from typing import Any

# its_hub ships no type information
from its_hub.api.reward_models.prm import AbstractProcessRewardModel  # type: ignore[import-untyped]
from its_hub.api.types import ChatMessage  # type: ignore[import-untyped]
from its_hub.core.algorithms.particle_gibbs import ParticleFiltering  # type: ignore[import-untyped]
from its_hub.core.lms.openai_lm import OpenAICompatibleLanguageModel  # type: ignore[import-untyped]
from its_hub.core.lms.step_generation import StepGeneration  # type: ignore[import-untyped]
from its_hub.core.reward_models.llm_judge import LLMJudge  # type: ignore[import-untyped]

JUDGE_SCALE = 10.0
"""The top of ``LLMJudge``'s default scale (its prompt asks for 0-10)."""
JUDGE_FORMATS: dict[str, dict[str, Any] | None] = {
    "schema": LLMJudge.SCORE_RESPONSE_FORMAT,
    "object": {"type": "json_object"},
    "none": None,
}


class ContinuingModel(OpenAICompatibleLanguageModel):
    """its_hub's client, with a continued assistant message's reply made the new text
    only (llama-server repeats the given text before it), and with ``sampling`` (e.g.
    ``{"top_k": 0, "top_p": 1.0, "min_p": 0.0}``) added to every request: its_hub sends
    only the temperature, and llama-server fills in its own defaults for the rest (top-k
    40, top-p 0.95, min-p 0.05), where vLLM, which its_hub is written against, has none."""

    def __init__(self, *args: Any, sampling: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sampling = dict(sampling or {})

    def _prepare_request_data(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        data: dict[str, Any] = super()._prepare_request_data(*args, **kwargs)
        return {**data, **self.sampling}

    async def agenerate(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
        replies = await super().agenerate(messages, *args, **kwargs)
        if not isinstance(messages[0], list):
            return _new_text(messages, replies)
        return [_new_text(m, r) for m, r in zip(messages, replies, strict=True)]


def _new_text(messages: list[Any], reply: dict[str, Any]) -> dict[str, Any]:
    given = messages[-1].content if messages[-1].role == "assistant" else ""
    text = reply.get("content") or ""
    if given and text.startswith(given):
        return {**reply, "content": text[len(given) :]}
    return reply


class FallbackCounter(logging.Handler):
    """Counts the judge replies ``LLMJudge`` could not read a score from (it logs each one
    and scores it ``fallback_score``)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Failed to extract score"):
            self.count += 1


class JudgeAsProcessReward(AbstractProcessRewardModel):
    """its_hub's ``LLMJudge`` as a process reward: P(good) = score / 10, clipped to [0, 1]."""

    def __init__(self, judge: LLMJudge, judge_tokens: int) -> None:
        self.judge = judge
        self.judge_tokens = judge_tokens

    def score(self, prompt_or_messages: Any, steps: list[str]) -> list[float]:
        return asyncio.run(self.ascore(prompt_or_messages, steps))

    async def ascore(self, prompt_or_messages: Any, steps: list[str]) -> list[float]:
        conversations = [
            [ChatMessage(role="user", content=prompt_or_messages), ChatMessage("assistant", s)]
            for s in steps
        ]
        # greedy, as a judge is; the score is the first field of its JSON, so the cap only
        # shortens the reasoning that follows it
        scores = await self.judge.ascore(
            conversations, temperature=0.0, max_completion_tokens=self.judge_tokens
        )
        return [min(1.0, max(0.0, float(s) / JUDGE_SCALE)) for s in scores]


def build(spec: dict[str, Any]) -> tuple[ParticleFiltering, OpenAICompatibleLanguageModel]:
    """The search and the model client ``spec`` describes."""
    lm = ContinuingModel(
        endpoint=spec["endpoint"],
        api_key="unused",
        model_name=spec["model"],
        # with a step token, StepGeneration sends no per-step cap of its own: the client's
        # default cap is the per-step cap
        max_completion_tokens=spec["step_tokens"],
        max_tries=1,
        sampling=spec.get("sampling"),
    )
    sg = StepGeneration(
        # its_hub stops a particle once it has more than max_steps steps; ponder's cap
        # counts steps, so one less makes the two the same
        max_steps=spec["max_steps"] - 1,
        step_token=spec["delimiter"],
        stop_token=spec["stop_token"],
        temperature=spec["temperature"],
    )
    judge = LLMJudge(lm, response_format=JUDGE_FORMATS[spec["judge_format"]])
    prm = JudgeAsProcessReward(judge, spec["judge_tokens"])
    return ParticleFiltering(sg, prm), lm


async def run(spec: dict[str, Any], fallbacks: FallbackCounter) -> None:
    pf, lm = build(spec)
    try:
        for problem in spec["problems"]:
            if not sys.stdin.readline():  # the bench is done with us
                break
            before = fallbacks.count
            t0 = time.perf_counter()
            search = pf.ainfer(lm, problem["prompt"], spec["particles"], False)
            try:
                result = await asyncio.wait_for(search, spec.get("timeout"))
            except TimeoutError:  # stopped at the bench's time limit: no answer
                line = {
                    "id": problem["id"],
                    "answer": "",
                    "seconds": time.perf_counter() - t0,
                    "steps": None,
                    "judge_fallbacks": fallbacks.count - before,
                    "timed_out": True,
                }
                print(json.dumps(line), flush=True)
                continue
            seconds = time.perf_counter() - t0
            line = {
                "id": problem["id"],
                "answer": result.the_one.get("content") or "",
                "seconds": seconds,
                "steps": result.steps_used_lst[result.selected_index],
                "judge_fallbacks": fallbacks.count - before,
                "particle_steps": list(result.steps_used_lst),
                "log_weights": [round(float(w), 3) for w in result.log_weights_lst],
            }
            print(json.dumps(line), flush=True)
    finally:
        await lm.close()


def main() -> None:
    spec = json.loads(sys.stdin.readline())
    random.seed(spec["seed"])  # its_hub resamples with the random module
    warnings.simplefilter("ignore", DeprecationWarning)  # StepGeneration's batch call
    fallbacks = FallbackCounter()
    logging.getLogger().addHandler(fallbacks)
    asyncio.run(run(spec, fallbacks))


if __name__ == "__main__":
    main()
