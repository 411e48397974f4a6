"""RPC: Reasoning Pruning + Perplexity Consistency.

Zhou et al. 2025, "Bridging Internal Probability and Self-Consistency for Effective and
Efficient LLM Reasoning" (NeurIPS 2025). Each sampled path ``t`` gets the probability
``p(t) = exp(mean token logprob)``.

* **Reasoning pruning**: fit a two-component Weibull mixture to the ``p(t)`` (maximum
  likelihood); drop a path when the low-probability component explains it better than the
  high one *and* ``p(t)`` is below the mean ``p``. ``pruning="quantile"`` is the simpler
  alternative (drop paths under the ``prune_quantile`` quantile), ``"none"`` keeps all.
* **Perplexity consistency**: the answer ``y`` scores ``sum of p(t)`` over the *distinct*
  kept paths with answer ``y``; the highest score wins.

Faithfulness notes: the authors fit the mixture with a bounded quasi-Newton optimiser; we
maximise the same likelihood with EM (weighted Weibull MLE per component, mixing weight
held in [0.2, 0.8] as in their bounds), so the fit can differ where the likelihood has
several optima. An empty path (no tokens: no probability, no answer) is dropped before the
fit, so it cannot pose as the low component. With fewer than 4 other paths, or all equally
likely, no mixture can be fitted and nothing else is pruned. Ties go to the larger cluster,
then the answer seen first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ponder.engines.base import Engine
from ponder.strategies.base import StrategyBase, register
from ponder.strategies.common import BallotConfig, need_logprobs, sample, to_candidate, usage_of
from ponder.strategies.selection import ballots, select_rpc, with_votes
from ponder.types import Budget, Problem, Result

PRUNING = ("weibull", "quantile", "none")


@dataclass(frozen=True)
class RPCConfig(BallotConfig):
    """``pruning``: ``"weibull"`` (the paper), ``"quantile"`` or ``"none"``;
    ``prune_quantile``: for ``"quantile"``, the share of least likely paths to drop."""

    pruning: str = "weibull"
    prune_quantile: float = 0.25

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pruning not in PRUNING:
            raise ValueError(f"pruning must be one of {PRUNING}, got {self.pruning!r}")
        if not 0 <= self.prune_quantile < 1:
            raise ValueError(f"prune_quantile must be in [0, 1), got {self.prune_quantile}")


@register
class RPC(StrategyBase):
    name: ClassVar[str] = "rpc"
    summary: ClassVar[str] = (
        "prune unlikely paths (Weibull mixture), vote by summed path probability"
    )
    budget_means: ClassVar[str] = "number of samples"
    Config = RPCConfig

    async def run(self, problem: Problem, engine: Engine, scorer: Any, budget: Budget) -> Result:
        cfg = self.config
        need_logprobs(engine, self.name)
        samples = await sample(engine, problem, cfg.sampling(budget, logprobs=True), budget.n)
        cands = [to_candidate(c, cfg.answer_kind) for c in samples]
        # A path without tokens has no probability; it cannot carry an answer either.
        chosen = select_rpc(ballots(cands, cfg.unfinished), cfg.pruning, cfg.prune_quantile)
        probs, keep = chosen.details["probabilities"], chosen.details["keep"]
        mix, scores = chosen.details["mixture"], chosen.details["answer_scores"]
        clusters, winner = chosen.clusters, chosen.winner
        voted = with_votes(cands, clusters)
        best = None if chosen.index is None else voted[chosen.index]
        total = sum(scores.values())
        return Result(
            answer=None if best is None else best.answer,
            best=best,
            candidates=voted,
            usage=usage_of(samples),
            strategy=self.name,
            trace={
                "kind": "samples",
                "clusters": clusters,
                "winner": winner,
                "probabilities": probs,
                "pruned": [i for i, k in enumerate(keep) if not k],
                "pruning": cfg.pruning,
                "mixture": None if mix is None else mix.as_dict(),
                "answer_scores": scores,
                "answer_shares": {k: v / total for k, v in scores.items()} if total else {},
            },
        )
