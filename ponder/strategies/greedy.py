"""One greedy (temperature 0) answer: the baseline every method is measured against."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ponder.engines.base import Engine
from ponder.scoring.answers import KINDS
from ponder.strategies.base import StrategyBase, register
from ponder.strategies.common import sample, to_candidate
from ponder.types import GREEDY, Budget, Problem, Result


@dataclass(frozen=True)
class GreedyConfig:
    max_tokens: int = 512
    answer_kind: str = "auto"

    def __post_init__(self) -> None:
        if self.answer_kind not in KINDS:
            raise ValueError(f"answer_kind must be one of {KINDS}, got {self.answer_kind!r}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")


@register
class Greedy(StrategyBase):
    name: ClassVar[str] = "greedy"
    summary: ClassVar[str] = "one deterministic answer (temperature 0); the baseline"
    budget_means: ClassVar[str] = "ignored (always one sample)"
    Config = GreedyConfig

    async def run(self, problem: Problem, engine: Engine, scorer: Any, budget: Budget) -> Result:
        max_tokens = min(self.config.max_tokens, budget.max_tokens or self.config.max_tokens)
        [c] = await sample(engine, problem, GREEDY.with_(max_tokens=max_tokens), 1)
        cand = to_candidate(c, self.config.answer_kind, votes=1)
        return Result(
            answer=cand.answer,
            best=cand,
            candidates=(cand,),
            usage=c.usage,
            strategy=self.name,
            trace={"kind": "samples", "clusters": {}, "winner": cand.answer},
        )
