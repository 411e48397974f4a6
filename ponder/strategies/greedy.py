"""One greedy (temperature 0) answer: the baseline every method is measured against."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ponder.engines.base import Engine
from ponder.scoring.answers import extract_answer
from ponder.strategies.base import register
from ponder.types import GREEDY, Budget, Candidate, Problem, Request, Result


@dataclass(frozen=True)
class GreedyConfig:
    max_tokens: int = 512
    answer_kind: str = "auto"


@register
class Greedy:
    name: ClassVar[str] = "greedy"
    summary: ClassVar[str] = "one deterministic answer (temperature 0); the baseline"
    budget_means: ClassVar[str] = "ignored (always one sample)"

    def __init__(self, **config: object) -> None:
        self.config = GreedyConfig(**config)  # type: ignore[arg-type]

    async def run(self, problem: Problem, engine: Engine, budget: Budget) -> Result:
        max_tokens = min(self.config.max_tokens, budget.max_tokens or self.config.max_tokens)
        [[c]] = await engine.generate(
            [Request(problem.messages, GREEDY.with_(max_tokens=max_tokens))]
        )
        cand = Candidate(
            text=c.text,
            answer=extract_answer(c.text, self.config.answer_kind),
            tokens=c.tokens,
            votes=1,
            mean_logprob=c.mean_logprob,
            finish_reason=c.finish_reason,
        )
        return Result(
            answer=cand.answer,
            best=cand,
            candidates=(cand,),
            usage=c.usage,
            strategy=self.name,
            trace={"kind": "single"},
        )
