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

from collections.abc import Sequence
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


@dataclass(frozen=True)
class Check:
    """The vote after one window: whether the rule stops (``done``), the posterior
    probability it used (``probability``; None for ``unanimous``), the leading cluster and
    all clusters (key -> sample indices)."""

    done: bool
    probability: float | None
    leader: str | None
    clusters: dict[str, list[int]]


def check(
    config: EarlyStopVoteConfig, candidates: Sequence[Candidate], window: int, rng: Any
) -> Check:
    """Whether the vote over ``candidates`` (every sample drawn so far, the last ``window``
    of them the window just drawn) is settled by ``config.rule``. The live strategy and the
    pool estimate (``replay``) both call this after every window."""
    leader, clusters = majority(candidates)
    key_of = {i: k for k, ix in clusters.items() for i in ix}
    window_keys = [key_of.get(i) for i in range(len(candidates) - window, len(candidates))]
    if config.rule == "unanimous":
        return Check(stopping.unanimous_window(window_keys, leader), None, leader, clusters)
    counts = [len(ix) for ix in clusters.values()]
    if not counts:
        return Check(False, 0.0, leader, clusters)
    if config.rule == "beta":
        p = stopping.beta_leader_probability(counts)
    else:
        p = stopping.dirichlet_leader_probability(counts, rng, config.draws)
    return Check(p > config.confidence, p, leader, clusters)


def windows(config: EarlyStopVoteConfig, budget: int) -> list[int]:
    """The window sizes drawn at a budget of ``budget`` samples, if the vote never
    settles: ``window`` each, the last cut to what the budget has left."""
    return [min(config.window, budget - i) for i in range(0, budget, config.window)]


def replay(
    config: EarlyStopVoteConfig, candidates: Sequence[Candidate], budget: int, rng: Any
) -> tuple[int, int | None]:
    """The strategy over samples already drawn, in their order: (how many it draws, the
    index of the sample it answers with, None when no sample has an answer). What
    ``run`` does, with the drawing taken out."""
    if not 1 <= budget <= len(candidates):
        raise ValueError(
            f"early-stop-vote's replay needs a budget from 1 to the {len(candidates)} "
            f"samples given, got {budget}"
        )
    drawn = 0
    for m in windows(config, budget):
        drawn += m
        verdict = check(config, candidates[:drawn], m, rng)
        if verdict.done:
            break
    return drawn, answer_index(candidates, verdict.clusters, verdict.leader)


def answer_index(
    candidates: Sequence[Candidate], clusters: dict[str, list[int]], leader: str | None
) -> int | None:
    """The sample answered with: the shortest of the leading cluster (the first on ties),
    as self-consistency picks; None when no sample has an answer."""
    if leader is None:
        return None
    return min(clusters[leader], key=lambda i: candidates[i].tokens)


@register
class EarlyStopVote(StrategyBase):
    name: ClassVar[str] = "early-stop-vote"
    summary: ClassVar[str] = "majority vote sampled in windows, stopping once the vote is settled"
    budget_means: ClassVar[str] = "maximum number of samples"
    Config = EarlyStopVoteConfig

    async def run(self, problem: Problem, engine: Engine, scorer: Any, budget: Budget) -> Result:
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        samples: list[Completion] = []
        cands: list[Candidate] = []
        rounds: list[dict[str, Any]] = []
        stopped = "budget"
        winner: str | None = None
        clusters: dict[str, list[int]] = {}
        for m in windows(cfg, budget.n):
            # Each window is a fresh batch: a new seed, or it would repeat the first window.
            seed = None if cfg.seed is None else cfg.seed + len(rounds)
            params = cfg.sampling(budget, logprobs=engine.capabilities.logprobs, seed=seed)
            new = await sample(engine, problem, params, m)
            samples.extend(new)
            cands.extend(to_candidate(c, cfg.answer_kind) for c in new)
            verdict = check(cfg, cands, m, rng)
            winner, clusters = verdict.leader, verdict.clusters
            rounds.append(
                {
                    "round": len(rounds),
                    "samples": m,
                    "drawn": len(samples),
                    "seed": seed,
                    "votes": {k: len(ix) for k, ix in clusters.items()},
                    "leader": winner,
                    "probability": verdict.probability,
                    "settled": verdict.done,
                }
            )
            if verdict.done:
                stopped = "settled"
                break
        voted = with_votes(cands, clusters)
        index = answer_index(cands, clusters, winner)
        best = None if index is None else voted[index]
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
