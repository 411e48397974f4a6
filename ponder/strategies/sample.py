"""Repeated sampling with a verifier: the first sample the scorer accepts.

Brown et al., "Large Language Monkeys: Scaling Inference Compute with Repeated Sampling"
(2024): draw ``n`` independent samples; a verifier accepts any that passes, and a problem
is *covered* when at least one sample is accepted. Here the verifier is an outcome scorer
and "passes" means ``score >= threshold``; the answer is the first accepted sample (in
sampling order). When none passes, the answer is the best-scoring sample and the trace says
nothing was accepted. Without a scorer there is nothing to verify: the answer is the most
likely sample (highest mean token log-probability) when the engine reports log-probs,
else the first sample.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from ponder.engines.base import Engine
from ponder.scoring.answers import cluster_answers
from ponder.scoring.base import require_outcome
from ponder.strategies.base import StrategyBase, register
from ponder.strategies.common import SamplingConfig, sample, to_candidate, usage_of
from ponder.strategies.selection import select_first_accepted
from ponder.types import Budget, Problem, Result


@dataclass(frozen=True)
class SampleConfig(SamplingConfig):
    """``threshold``: the score at which the verifier accepts a sample (0.5 suits a
    probability such as a judge's P(Yes); use 1.0 for "all visible tests pass")."""

    threshold: float = 0.5


@register
class Sample(StrategyBase):
    name: ClassVar[str] = "sample"
    summary: ClassVar[str] = (
        "n independent samples; with a verifier, the first one it accepts (coverage)"
    )
    budget_means: ClassVar[str] = "number of samples"
    Config = SampleConfig

    async def run(self, problem: Problem, engine: Engine, scorer: Any, budget: Budget) -> Result:
        cfg = self.config
        params = cfg.sampling(budget, logprobs=engine.capabilities.logprobs)
        samples = await sample(engine, problem, params, budget.n)
        cands = [to_candidate(c, cfg.answer_kind) for c in samples]
        usage = usage_of(samples)
        trace: dict[str, Any] = {
            "kind": "samples",
            "clusters": cluster_answers([c.answer for c in cands]),
        }
        if scorer is not None:
            outcome = require_outcome(scorer, self.name)
            scores = await outcome.score(problem, [c.text for c in cands])
            usage = usage + scores.usage
            cands = [replace(c, score=s) for c, s in zip(cands, scores.values, strict=True)]
            chosen = select_first_accepted(cands, scores.values, cfg.threshold)
            passed = chosen.details["passed"]
            pick = chosen.index
            trace.update(
                scores=list(scores.values),
                passed=passed,
                accepted=passed[0] if passed else None,
                threshold=cfg.threshold,
            )
        else:
            chosen = select_first_accepted(cands, None, cfg.threshold)
            pick = chosen.index
            trace.update(passed=[], accepted=None, picked_by=chosen.details["picked_by"])
        assert pick is not None
        best = cands[pick]
        trace["winner"] = best.answer
        trace["best_index"] = pick
        return Result(
            answer=best.answer,
            best=best,
            candidates=tuple(cands),
            usage=usage,
            strategy=self.name,
            trace=trace,
        )
