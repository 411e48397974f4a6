"""Majority vote over sampled answers (self-consistency).

Wang et al., "Self-Consistency Improves Chain of Thought Reasoning in Language Models"
(2022): sample ``n`` reasoning paths, extract each final answer, cluster equivalent
answers and return the largest cluster. Ties go to the cluster whose shortest member
is shorter ("Think Deep, Think Fast": correct answers tend to be shorter), then to the
higher mean token log-probability.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from ponder.engines.base import Engine
from ponder.scoring.answers import cluster_answers, extract_answer
from ponder.strategies.base import register
from ponder.types import Budget, Candidate, Problem, Request, Result, SamplingParams, Usage


@dataclass(frozen=True)
class VoteConfig:
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.0
    max_tokens: int = 512
    seed: int | None = 0
    answer_kind: str = "auto"


def majority(candidates: Sequence[Candidate]) -> tuple[str | None, dict[str, list[int]]]:
    """The winning cluster key and all clusters (key -> candidate indices).

    Winner: most members; ties broken by the shortest member's token count, then by
    the best mean log-probability in the cluster. ``None`` when no candidate has an answer.
    """
    clusters = cluster_answers([c.answer for c in candidates])
    if not clusters:
        return None, clusters

    def rank(key: str) -> tuple[int, int, float]:
        members = [candidates[i] for i in clusters[key]]
        shortest = min(m.tokens for m in members)
        best_lp = max((m.mean_logprob for m in members if m.mean_logprob is not None), default=0.0)
        return (-len(members), shortest, -best_lp)

    return min(clusters, key=rank), clusters


@register
class Vote:
    name: ClassVar[str] = "vote"
    summary: ClassVar[str] = "n samples, majority vote over equivalent final answers"
    budget_means: ClassVar[str] = "number of samples"

    def __init__(self, **config: object) -> None:
        self.config = VoteConfig(**config)  # type: ignore[arg-type]

    async def run(self, problem: Problem, engine: Engine, budget: Budget) -> Result:
        cfg = self.config
        params = SamplingParams(
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            top_k=cfg.top_k,
            min_p=cfg.min_p,
            max_tokens=min(cfg.max_tokens, budget.max_tokens or cfg.max_tokens),
            seed=cfg.seed,
            logprobs=engine.capabilities.logprobs,
        )
        [samples] = await engine.generate([Request(problem.messages, params, n=budget.n)])
        raw = [
            Candidate(
                text=c.text,
                answer=extract_answer(c.text, cfg.answer_kind),
                tokens=c.tokens,
                mean_logprob=c.mean_logprob,
                finish_reason=c.finish_reason,
            )
            for c in samples
        ]
        winner, clusters = majority(raw)
        votes = {i: len(ix) for ix in clusters.values() for i in ix}
        cands = tuple(
            Candidate(**{**c.__dict__, "votes": votes.get(i, 0)}) for i, c in enumerate(raw)
        )
        best = None
        if winner is not None:
            best = min((cands[i] for i in clusters[winner]), key=lambda c: c.tokens)
        return Result(
            answer=None if best is None else best.answer,
            best=best,
            candidates=cands,
            usage=Usage.total([c.usage for c in samples]),
            strategy=self.name,
            trace={"kind": "vote", "clusters": clusters, "winner": winner},
        )
