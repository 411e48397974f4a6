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
from ponder.scoring.answers import cluster_answers
from ponder.scoring.base import require_outcome
from ponder.strategies.base import StrategyBase, register
from ponder.strategies.common import SamplingConfig, sample, to_candidate, usage_of
from ponder.strategies.self_consistency import with_votes
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


def frequent_answers(clusters: dict[str, list[int]], n: int, alpha: float, top_k: int) -> list[str]:
    """Keys of the clusters with ``len / n >= alpha``, most frequent first (ties: first seen),
    cut to ``top_k`` when it is > 0; the most frequent clusters when none reach ``alpha``."""
    ranked = sorted(clusters, key=lambda k: -len(clusters[k]))  # stable: first seen wins ties
    keep = [k for k in ranked if len(clusters[k]) >= alpha * n]
    if not keep and ranked:
        most = len(clusters[ranked[0]])
        keep = [k for k in ranked if len(clusters[k]) == most]
    return keep[:top_k] if top_k else keep


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
        clusters = cluster_answers([c.answer for c in cands])
        survivors = frequent_answers(clusters, budget.n, cfg.alpha, cfg.top_k)
        members = sorted(i for k in survivors for i in clusters[k])
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
        if members:
            pick = min(members, key=lambda i: (-(scores[i] or 0.0), cands[i].tokens, i))
            best = voted[pick]
            winner = next(k for k in survivors if pick in clusters[k])
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
