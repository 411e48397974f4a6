"""Self-consistency: majority vote over sampled answers.

Wang et al., "Self-Consistency Improves Chain of Thought Reasoning in Language Models"
(ICLR 2023): sample ``n`` reasoning paths at temperature ~0.7, extract each final answer,
cluster equivalent answers and return the largest cluster. Ties go to the cluster whose
shortest member is shorter ("Think Deep, Think Fast", 2025: correct answers tend to be
shorter), then to the higher mean token log-probability.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from ponder.engines.base import Engine
from ponder.strategies.base import StrategyBase, register
from ponder.strategies.common import SamplingConfig, sample, to_candidate, usage_of
from ponder.strategies.selection import select_majority
from ponder.types import Budget, Candidate, Problem, Result


@dataclass(frozen=True)
class SelfConsistencyConfig(SamplingConfig):
    pass


def majority(candidates: Sequence[Candidate]) -> tuple[str | None, dict[str, list[int]]]:
    """The winning cluster key and all clusters (key -> candidate indices), by
    ``selection.select_majority``: most members; ties broken by the shortest member's token
    count, then by the best mean log-probability in the cluster. ``None`` when no candidate
    has an answer."""
    chosen = select_majority(candidates)
    return chosen.winner, chosen.clusters


def with_votes(
    candidates: Sequence[Candidate], clusters: dict[str, list[int]]
) -> tuple[Candidate, ...]:
    """The candidates with ``votes`` set to the size of their answer's cluster."""
    votes = {i: len(ix) for ix in clusters.values() for i in ix}
    return tuple(replace(c, votes=votes.get(i, 0)) for i, c in enumerate(candidates))


@register
class SelfConsistency(StrategyBase):
    name: ClassVar[str] = "self-consistency"
    aliases: ClassVar[tuple[str, ...]] = ("vote",)
    summary: ClassVar[str] = "n samples, majority vote over equivalent final answers"
    budget_means: ClassVar[str] = "number of samples"
    Config = SelfConsistencyConfig

    async def run(self, problem: Problem, engine: Engine, scorer: Any, budget: Budget) -> Result:
        cfg = self.config
        params = cfg.sampling(budget, logprobs=engine.capabilities.logprobs)
        samples = await sample(engine, problem, params, budget.n)
        raw = [to_candidate(c, cfg.answer_kind) for c in samples]
        chosen = select_majority(raw)
        winner, clusters = chosen.winner, chosen.clusters
        cands = with_votes(raw, clusters)
        best = None if chosen.index is None else cands[chosen.index]
        return Result(
            answer=None if best is None else best.answer,
            best=best,
            candidates=cands,
            usage=usage_of(samples),
            strategy=self.name,
            trace={"kind": "samples", "clusters": clusters, "winner": winner},
        )
