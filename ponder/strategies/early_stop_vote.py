"""Early-stopping self-consistency: sample in windows, stop once the vote is settled.

Li et al. 2024, "Escape Sky-high Cost: Early-stopping Self-Consistency for Multi-step
Reasoning" (ICLR 2024, ESC): draw samples in windows of ``window``; stop as soon as a whole
window agrees (``rule="unanimous"``: every answer of the last window equals the current
majority answer). Aggarwal et al. 2023, "Let's Sample Step by Step: Adaptive-Consistency
for Efficient Reasoning and Coding with LLMs": stop when a posterior over the answer
distribution is confident in the leader. ``rule="beta"``: with the two largest vote
counts ``v1 >= v2``, stop when ``P(p > 1/2) > confidence`` for ``p ~ Beta(v1+1, v2+1)``
(exact). ``rule="dirichlet"``: stop when ``P(the leader has the largest probability) >
confidence`` under ``Dirichlet(v + 1)`` over the seen answers plus one unseen-answer
category (Monte-Carlo, seeded). Adaptive-Consistency checks after every sample; here the
rule is checked after every window (``window=1`` reproduces it). Defaults: ``window=5``
(ESC), ``confidence=0.95`` (Adaptive-Consistency). The final answer is the majority vote
with self-consistency's tie-breaks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ponder.engines.base import Engine
from ponder.strategies import stopping
from ponder.strategies.base import StrategyBase, register
from ponder.strategies.common import SamplingConfig, sample, to_candidate, usage_of
from ponder.strategies.selection import majority, with_votes
from ponder.types import Budget, Candidate, Completion, Problem, Result

RULES = ("unanimous", "beta", "dirichlet")


@dataclass(frozen=True)
class EarlyStopVoteConfig(SamplingConfig):
    """``window``: samples per round (one batched request each, its own seed);
    ``rule``: ``"unanimous"``, ``"beta"`` or ``"dirichlet"``; ``confidence``: the posterior
    probability the Beta/Dirichlet rules need; ``draws``: Monte-Carlo draws (Dirichlet)."""

    window: int = 5
    rule: str = "unanimous"
    confidence: float = 0.95
    draws: int = 20000

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.window < 1:
            raise ValueError(f"window must be >= 1 sample, got {self.window}")
        if self.rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {self.rule!r}")
        if not 0.5 <= self.confidence < 1:
            raise ValueError(f"confidence must be in [0.5, 1), got {self.confidence}")
        if self.draws < 1:
            raise ValueError(f"draws must be >= 1, got {self.draws}")


@register
class EarlyStopVote(StrategyBase):
    name: ClassVar[str] = "early-stop-vote"
    summary: ClassVar[str] = "majority vote sampled in windows, stopping once the vote is settled"
    budget_means: ClassVar[str] = "maximum number of samples"
    Config = EarlyStopVoteConfig

    def settled(
        self, counts: list[int], window_keys: list[str | None], lead: str | None, rng: Any
    ) -> tuple[bool, float | None]:
        """Whether the rule stops here, and the posterior probability it used (if any)."""
        cfg = self.config
        if cfg.rule == "unanimous":
            return stopping.unanimous_window(window_keys, lead), None
        if not counts:
            return False, 0.0
        if cfg.rule == "beta":
            p = stopping.beta_leader_probability(counts)
        else:
            p = stopping.dirichlet_leader_probability(counts, rng, cfg.draws)
        return p > cfg.confidence, p

    async def run(self, problem: Problem, engine: Engine, scorer: Any, budget: Budget) -> Result:
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        samples: list[Completion] = []
        cands: list[Candidate] = []
        rounds: list[dict[str, Any]] = []
        stopped = "budget"
        winner: str | None = None
        clusters: dict[str, list[int]] = {}
        while len(samples) < budget.n:
            m = min(cfg.window, budget.n - len(samples))
            # Each window is a fresh batch: a new seed, or it would repeat the first window.
            seed = None if cfg.seed is None else cfg.seed + len(rounds)
            params = cfg.sampling(budget, logprobs=engine.capabilities.logprobs, seed=seed)
            new = await sample(engine, problem, params, m)
            samples.extend(new)
            cands.extend(to_candidate(c, cfg.answer_kind) for c in new)
            winner, clusters = majority(cands)
            key_of = {i: k for k, ix in clusters.items() for i in ix}
            window_keys = [key_of.get(i) for i in range(len(cands) - m, len(cands))]
            counts = [len(ix) for ix in clusters.values()]
            done, prob = self.settled(counts, window_keys, winner, rng)
            rounds.append(
                {
                    "round": len(rounds),
                    "samples": m,
                    "drawn": len(samples),
                    "seed": seed,
                    "votes": {k: len(ix) for k, ix in clusters.items()},
                    "leader": winner,
                    "probability": prob,
                    "settled": done,
                }
            )
            if done:
                stopped = "settled"
                break
        voted = with_votes(cands, clusters)
        best = None
        if winner is not None:
            best = min((voted[i] for i in clusters[winner]), key=lambda c: c.tokens)
        return Result(
            answer=None if best is None else best.answer,
            best=best,
            candidates=voted,
            usage=usage_of(samples),
            strategy=self.name,
            trace={
                "kind": "rounds",
                "rounds": rounds,
                "rule": cfg.rule,
                "stopped": stopped,
                "samples_drawn": len(samples),
                "clusters": clusters,
                "winner": winner,
            },
        )
