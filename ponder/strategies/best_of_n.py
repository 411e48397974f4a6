"""Best-of-N and weighted Best-of-N with an outcome scorer (verifier / reward model).

Best-of-N (e.g. Cobbe et al. 2021, "Training Verifiers to Solve Math Word Problems";
Lightman et al. 2023, "Let's Verify Step by Step"): sample ``n`` solutions, score each,
return the highest-scoring one. Weighted Best-of-N (Li et al. 2023, "Making Large Language
Models Better Reasoners with Step-Aware Verifier"; used as a baseline by Snell et al. 2024):
sum the scores of each answer cluster and return the best member of the best cluster, so a
score the verifier gives many equivalent solutions adds up. Ties: Best-of-N prefers the
shorter sample, then the earlier; weighted Best-of-N the larger cluster, then the answer
seen first.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from ponder.engines.base import Engine
from ponder.scoring.answers import cluster_answers
from ponder.scoring.base import require_outcome
from ponder.strategies.base import StrategyBase, register
from ponder.strategies.common import SamplingConfig, sample, to_candidate, usage_of
from ponder.strategies.selection import best_scored, select_weighted, with_votes
from ponder.types import Budget, Candidate, Problem, Result, Usage


@dataclass(frozen=True)
class BestOfNConfig(SamplingConfig):
    pass


async def scored_samples(
    strategy: str,
    cfg: SamplingConfig,
    problem: Problem,
    engine: Engine,
    scorer: Any,
    budget: Budget,
) -> tuple[list[Candidate], Usage]:
    """``budget.n`` samples in one request, all scored in one scorer call; with their usage."""
    outcome = require_outcome(scorer, strategy)
    params = cfg.sampling(budget, logprobs=engine.capabilities.logprobs)
    samples = await sample(engine, problem, params, budget.n)
    cands = [to_candidate(c, cfg.answer_kind) for c in samples]
    scores = await outcome.score(problem, [c.text for c in cands])
    cands = [replace(c, score=s) for c, s in zip(cands, scores.values, strict=True)]
    return cands, usage_of(samples) + scores.usage


@register
class BestOfN(StrategyBase):
    name: ClassVar[str] = "best-of-n"
    summary: ClassVar[str] = "n samples, return the one the scorer rates highest"
    budget_means: ClassVar[str] = "number of samples (each scored once)"
    Config = BestOfNConfig

    async def run(self, problem: Problem, engine: Engine, scorer: Any, budget: Budget) -> Result:
        cands, usage = await scored_samples(self.name, self.config, problem, engine, scorer, budget)
        pick = best_scored(cands, [c.score for c in cands])
        clusters = cluster_answers([c.answer for c in cands])
        voted = with_votes(cands, clusters)
        best = voted[pick]
        return Result(
            answer=best.answer,
            best=best,
            candidates=voted,
            usage=usage,
            strategy=self.name,
            trace={
                "kind": "samples",
                "clusters": clusters,
                "winner": best.answer,
                "scores": [c.score for c in cands],
                "best_index": pick,
            },
        )


@register
class WeightedBestOfN(StrategyBase):
    name: ClassVar[str] = "weighted-best-of-n"
    summary: ClassVar[str] = "n samples, return the answer whose samples' scores sum highest"
    budget_means: ClassVar[str] = "number of samples (each scored once)"
    Config = BestOfNConfig

    async def run(self, problem: Problem, engine: Engine, scorer: Any, budget: Budget) -> Result:
        cands, usage = await scored_samples(self.name, self.config, problem, engine, scorer, budget)
        scores = [c.score or 0.0 for c in cands]
        chosen = select_weighted(cands, scores)
        winner, clusters = chosen.winner, chosen.clusters
        totals = chosen.details["cluster_weights"]
        voted = with_votes(cands, clusters)
        best = None if chosen.index is None else voted[chosen.index]
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
                "scores": scores,
                "cluster_scores": totals,
            },
        )
