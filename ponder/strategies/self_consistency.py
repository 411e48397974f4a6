"""Self-consistency: majority vote over sampled answers.

Wang et al., "Self-Consistency Improves Chain of Thought Reasoning in Language Models"
(ICLR 2023): sample ``n`` reasoning paths at temperature ~0.7, extract each final answer,
cluster equivalent answers and return the largest cluster. The paper leaves ties open; here
they go to the cluster with the more confident member (higher mean token log-probability),
then to the one whose shortest member is shorter (docs/STRATEGIES.md says why).

``unfinished="drop"`` leaves out of the vote the samples that ran into the token cap, when
any sample ended on its own with an answer (``selection.ballots``): the paper reads each
path's final answer, and an unfinished path has none; the default, ``"vote"``, counts
whatever answer is extracted from them, as ponder always has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ponder.engines.base import Engine
from ponder.strategies.base import StrategyBase, register
from ponder.strategies.common import BallotConfig, sample, to_candidate, usage_of
from ponder.strategies.selection import ballots, select_majority, with_votes
from ponder.types import Budget, Problem, Result


@dataclass(frozen=True)
class SelfConsistencyConfig(BallotConfig):
    pass


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
        chosen = select_majority(ballots(raw, cfg.unfinished))
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
