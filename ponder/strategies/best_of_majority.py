"""Best-of-Majority: a frequency filter, then the reward model among the survivors.

Di et al. 2025, "Best-of-Majority: Minimax-Optimal Strategy for Pass@k Inference Scaling":
sample ``n`` solutions, keep only those whose answer has empirical frequency
``count / n >= alpha`` (optionally also only the ``top_k`` most frequent answers), score the
survivors with the reward model and return the highest-scoring one. Unlike Best-of-N it
does not degrade as ``n`` grows, because a rare answer the reward model over-rates is
filtered out before it is ranked. ``alpha`` is left open by the paper; 0.2 is our default.
If no answer reaches ``alpha``, the most frequent answers survive. Only survivors are
scored (one batched scorer call). The trace lists all surviving answers ranked by their
best reward (the top-k of that list is the paper's pass@k output).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from ponder.engines.base import Engine
from ponder.scoring.base import require_outcome
from ponder.strategies.base import StrategyBase, register
from ponder.strategies.common import SamplingConfig, sample, to_candidate, usage_of
from ponder.strategies.selection import (
    frequent_answers,
    majority_survivors,
    select_best_of_majority,
    with_votes,
)

__all__ = ["BestOfMajority", "BestOfMajorityConfig", "frequent_answers"]
from ponder.types import Budget, Problem, Result


@dataclass(frozen=True)
class BestOfMajorityConfig(SamplingConfig):
    """``alpha``: minimum answer frequency (share of the ``n`` samples) to survive;
    ``top_k``: if > 0, also keep only the ``top_k`` most frequent answers."""

    alpha: float = 0.2
    top_k: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be a frequency in [0, 1], got {self.alpha}")
        if self.top_k < 0:
            raise ValueError(
                f"top_k must be >= 0 (0 keeps every frequent answer), got {self.top_k}"
            )


@register
class BestOfMajority(StrategyBase):
    name: ClassVar[str] = "best-of-majority"
    summary: ClassVar[str] = "keep frequent answers only, then the one the scorer rates highest"
    budget_means: ClassVar[str] = "number of samples (survivors of the frequency filter are scored)"
    Config = BestOfMajorityConfig

    async def run(self, problem: Problem, engine: Engine, scorer: Any, budget: Budget) -> Result:
        cfg = self.config
        outcome = require_outcome(scorer, self.name)
        params = cfg.sampling(budget, logprobs=engine.capabilities.logprobs)
        samples = await sample(engine, problem, params, budget.n)
        cands = [to_candidate(c, cfg.answer_kind) for c in samples]
        usage = usage_of(samples)
        clusters, survivors, members = majority_survivors(cands, cfg.alpha, cfg.top_k)
        scores: list[float | None] = [None] * len(cands)
        if members:
            scored = await outcome.score(problem, [cands[i].text for i in members])
            usage = usage + scored.usage
            for i, s in zip(members, scored.values, strict=True):
                scores[i] = s
                cands[i] = replace(cands[i], score=s)
        voted = with_votes(cands, clusters)
        best, winner = None, None
        ranking: list[str] = []
        chosen = select_best_of_majority(cands, clusters, survivors, members, scores)
        if chosen.index is not None:
            best, winner = voted[chosen.index], chosen.winner
            best_reward = {k: max(scores[i] or 0.0 for i in clusters[k]) for k in survivors}
            ranking = sorted(survivors, key=lambda k: (k != winner, -best_reward[k]))
        return Result(
            answer=None if best is None else best.answer,
            best=best,
            candidates=voted,
            usage=usage,
            strategy=self.name,
            trace={
                "kind": "samples",
                "clusters": clusters,
                "winner": winner,
                "frequencies": {k: len(ix) / budget.n for k, ix in clusters.items()},
                "survivors": survivors,
                "ranking": ranking,
                "scores": scores,
                "alpha": cfg.alpha,
            },
        )
