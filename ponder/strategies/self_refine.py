"""Self-refine: the model critiques its own answer and revises it.

Madaan et al., "Self-Refine: Iterative Refinement with Self-Feedback" (NeurIPS 2023): one
model generates a draft, gives feedback on it, and rewrites it using that feedback,
repeating up to 4 times or until the feedback says nothing needs to change. The refine
step sees the history of earlier drafts and feedback, as in the paper (set
``history=False`` to show only the latest draft and keep prompts short).

Here the conversation is a chat: ``question → draft → "review it" → critique → "improve
it" → revision → "review it" → ...``. With ``budget.n > 1``, ``n`` independent chains run
side by side, every stage one batched engine call, and their final answers are put to a
majority vote.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ponder.engines.base import Engine
from ponder.strategies.base import StrategyBase, register
from ponder.strategies.common import SamplingConfig, to_candidate, usage_of
from ponder.strategies.selection import majority, with_votes
from ponder.types import Budget, Completion, Message, Problem, Request, Result, SamplingParams

CRITIQUE_PROMPT = (
    "Review your answer above step by step. Point out every mistake in its reasoning, "
    "calculations or completeness, and say how to fix each one. If it is entirely correct "
    "and complete, reply only with: {stop_phrase}"
)
"""The feedback prompt; ``{stop_phrase}`` is the config's stop phrase."""

REFINE_PROMPT = (
    "Using this feedback, write an improved, complete answer to the original question. "
    "Reply with the new answer only."
)
"""The refine prompt, sent after the model's feedback."""


@dataclass(frozen=True)
class SelfRefineConfig(SamplingConfig):
    """``rounds``: at most this many feedback → refine rounds (the paper iterates up to 4
    times). A chain stops early when its feedback gives ``stop_phrase`` as its verdict (see
    ``is_verdict``; case included). ``history``: show all earlier drafts and feedback to later
    rounds (the paper's setting) rather than only the latest draft."""

    rounds: int = 4
    stop_phrase: str = "ALL CORRECT"
    history: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rounds < 0:
            raise ValueError(f"rounds must be >= 0 (0 keeps the first draft), got {self.rounds}")
        if not self.stop_phrase.strip():
            raise ValueError("stop_phrase must be non-empty text")


_VERDICT_EDGES = " \t*_`\"'.!>#"


def is_verdict(critique: str, stop_phrase: str) -> bool:
    """Whether ``critique`` says the draft needs no change: its first or last non-blank
    line is ``stop_phrase`` alone (case included), up to whitespace, Markdown emphasis,
    quotes and closing punctuation. A line that merely contains the phrase ("not ALL
    CORRECT", "is it ALL CORRECT? no") is no verdict."""
    lines = [line.strip(_VERDICT_EDGES) for line in critique.splitlines()]
    said = [line for line in lines if line]
    phrase = stop_phrase.strip(_VERDICT_EDGES)
    return bool(said) and phrase in (said[0], said[-1])


@register
class SelfRefine(StrategyBase):
    name: ClassVar[str] = "self-refine"
    summary: ClassVar[str] = "draft, self-critique, revise; until the critique finds no issue"
    budget_means: ClassVar[str] = "number of independent refine chains (majority vote at the end)"
    Config = SelfRefineConfig

    async def run(self, problem: Problem, engine: Engine, scorer: Any, budget: Budget) -> Result:
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        params = cfg.sampling(budget, logprobs=engine.capabilities.logprobs)
        critique_msg: Message = {
            "role": "user",
            "content": CRITIQUE_PROMPT.format(stop_phrase=cfg.stop_phrase),
        }
        refine_msg: Message = {"role": "user", "content": REFINE_PROMPT}

        def seeded() -> SamplingParams:
            return params.with_(seed=int(rng.integers(2**31 - 1)))

        [drafts] = await engine.generate([Request(problem.messages, seeded(), n=budget.n)])
        usage = usage_of(drafts)
        current: list[Completion] = list(drafts)
        # The conversation each chain's next critique request continues (without its draft).
        context: list[tuple[Message, ...]] = [problem.messages] * budget.n
        live = list(range(budget.n))
        rounds: list[dict[str, Any]] = [{"round": 0, "drafts": [c.text for c in drafts]}]
        for r in range(1, cfg.rounds + 1):
            if not live:
                break
            asks = {
                i: (*context[i], {"role": "assistant", "content": current[i].text}, critique_msg)
                for i in live
            }
            crits = await engine.generate([Request(asks[i], seeded()) for i in live])
            usage = usage + usage_of(crits)
            chains: dict[int, dict[str, Any]] = {}
            revise = []
            for i, [crit] in zip(live, crits, strict=True):
                correct = is_verdict(crit.text, cfg.stop_phrase)
                chains[i] = {
                    "chain": i,
                    "draft": current[i].text,
                    "critique": crit.text,
                    "correct": correct,
                    "revision": None,
                }
                if not correct:
                    revise.append(
                        (i, (*asks[i], {"role": "assistant", "content": crit.text}, refine_msg))
                    )
            if revise:
                outs = await engine.generate([Request(msgs, seeded()) for _, msgs in revise])
                usage = usage + usage_of(outs)
                for (i, msgs), [rev] in zip(revise, outs, strict=True):
                    current[i] = rev
                    chains[i]["revision"] = rev.text
                    if cfg.history:
                        context[i] = msgs
            live = [i for i, _ in revise]
            rounds.append({"round": r, "chains": [chains[i] for i in sorted(chains)]})

        raw = [to_candidate(c, cfg.answer_kind) for c in current]
        winner, clusters = majority(raw)
        cands = with_votes(raw, clusters)
        if winner is not None:
            best = min((cands[i] for i in clusters[winner]), key=lambda c: c.tokens)
        else:
            best = cands[0]
        return Result(
            answer=best.answer,
            best=best,
            candidates=cands,
            usage=usage,
            strategy=self.name,
            trace={"kind": "rounds", "rounds": rounds, "clusters": clusters, "winner": winner},
        )
