"""Weighted majority vote: each sample's vote counts by its score or its probability.

Self-consistency (Wang et al., ICLR 2023) counts every sampled path once; weighting the
votes is the variant studied by Li et al. ("Making Large Language Models Better Reasoners
with Step-Aware Verifier", 2023: verifier-weighted voting) and, with the model's own
probability, by Zhou et al. 2025 ("Bridging Internal Probability and Self-Consistency").
An answer's weight is ``sum over its samples of w_i`` where ``w_i`` is

* ``"score"``: the outcome scorer's value for sample ``i`` (non-negative scores, e.g.
  probabilities, are what makes a sum meaningful);
* ``"path-probability"``: ``exp(mean token logprob)`` (``length_normalize=True``, the
  default) or ``exp(sum token logprob)``, the path's probability under the model.

``weight="auto"`` uses the scorer when one is given and the path probability otherwise.
Ties go to the larger cluster, then to the answer seen first.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from ponder.engines.base import Engine
from ponder.scoring.base import require_outcome
from ponder.strategies import numerics
from ponder.strategies.base import StrategyBase, register
from ponder.strategies.common import (
    BallotConfig,
    need_logprobs,
    sample,
    to_candidate,
    usage_of,
)
from ponder.strategies.selection import ballots, path_log_weight, select_weighted, with_votes
from ponder.types import Budget, Problem, Result

WEIGHTS = ("auto", "score", "path-probability")


@dataclass(frozen=True)
class WeightedVoteConfig(BallotConfig):
    """``weight``: what a vote is worth (see the module docstring); ``length_normalize``:
    for path probabilities, use the mean token log-prob instead of the sum."""

    weight: str = "auto"
    length_normalize: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.weight not in WEIGHTS:
            raise ValueError(f"weight must be one of {WEIGHTS}, got {self.weight!r}")


@register
class WeightedVote(StrategyBase):
    name: ClassVar[str] = "weighted-vote"
    summary: ClassVar[str] = "n samples, vote weighted by scorer score or path probability"
    budget_means: ClassVar[str] = "number of samples"
    Config = WeightedVoteConfig

    async def run(self, problem: Problem, engine: Engine, scorer: Any, budget: Budget) -> Result:
        cfg = self.config
        mode = cfg.weight
        if mode == "auto":
            mode = "score" if scorer is not None else "path-probability"
        outcome = require_outcome(scorer, self.name) if mode == "score" else None
        if mode == "path-probability":
            need_logprobs(engine, self.name)
        params = cfg.sampling(budget, logprobs=engine.capabilities.logprobs)
        samples = await sample(engine, problem, params, budget.n)
        cands = [to_candidate(c, cfg.answer_kind) for c in samples]
        usage = usage_of(samples)
        trace: dict[str, Any] = {"kind": "samples", "weight": mode}

        if outcome is not None:
            scores = await outcome.score(problem, [c.text for c in cands])
            usage = usage + scores.usage
            cands = [replace(c, score=s) for c, s in zip(cands, scores.values, strict=True)]
            weights = list(scores.values)
            chosen = select_weighted(ballots(cands, cfg.unfinished), weights)
            trace.update(scores=weights, cluster_weights=chosen.details["cluster_weights"])
        else:
            weights = [path_log_weight(c, cfg.length_normalize) for c in samples]
            chosen = select_weighted(ballots(cands, cfg.unfinished), weights, log_space=True)
            trace.update(
                log_weights=weights,
                length_normalize=cfg.length_normalize,
                cluster_weights=numerics.normalized_shares(chosen.details["cluster_weights"]),
            )

        clusters = chosen.clusters
        voted = with_votes(cands, clusters)
        best = None if chosen.index is None else voted[chosen.index]
        trace["clusters"] = clusters
        trace["winner"] = chosen.winner
        return Result(
            answer=None if best is None else best.answer,
            best=best,
            candidates=voted,
            usage=usage,
            strategy=self.name,
            trace=trace,
        )
