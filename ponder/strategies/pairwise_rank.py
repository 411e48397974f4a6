"""Pairwise ranking: the model judges candidates two at a time, Bradley–Terry picks the best.

Peer-ranked consensus (Fortytwo, 2025): sample ``n`` candidates, let a judge compare them
pairwise, fit Bradley–Terry strengths to the outcomes and return the strongest candidate.
Here the judge is the policy model itself. For a pair it is asked "Which response answers
the question better, A or B?" and the verdict is read from the top log-probabilities of
its next token: ``P(A) / (P(A) + P(B))``, a soft win rather than a hard one. Every pair is
asked in both orders (each candidate once as A, once as B) so the judge's position bias
cancels. Strengths are the maximum-likelihood Bradley–Terry fit, computed with Hunter's
minorise–maximise iteration ("MM algorithms for generalized Bradley–Terry models", Annals
of Statistics 2004) on the soft win counts.

The maths (``bradley_terry``, ``comparison_pairs``, ``soft_wins``) are public pure
functions; ``judge_pairs`` / ``rank_pairwise`` are shared with ``generate-rank-fuse``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ponder.engines.base import Engine
from ponder.scoring.answers import cluster_answers
from ponder.strategies.base import StrategyBase, register
from ponder.strategies.common import SamplingConfig, need_logprobs, sample, to_candidate, usage_of
from ponder.strategies.selection import with_votes
from ponder.types import (
    GREEDY,
    Budget,
    Completion,
    Message,
    Problem,
    Request,
    Result,
    Usage,
)

JUDGE_PROMPT = (
    "{question}\n\n"
    "Two responses to the question above follow.\n\n"
    "Response A:\n{a}\n\n"
    "Response B:\n{b}\n\n"
    "Which response answers the question better, A or B? Reply with one letter."
)
"""The judge's prompt; ``{question}`` is the problem's last user message."""


def restate(problem: Problem, template: str, **fields: str) -> tuple[Message, ...]:
    """The problem's conversation with its last (user) message replaced by ``template``
    filled with ``question`` (that message's text) and ``fields``."""
    if not problem.messages or problem.messages[-1]["role"] != "user":
        raise ValueError(
            f"problem {problem.id!r} must end with a user message (the question) to be "
            "shown back to the model"
        )
    *head, last = problem.messages
    return (*head, {"role": "user", "content": template.format(question=last["content"], **fields)})


def bradley_terry(
    wins: np.ndarray, prior: float = 0.0, tol: float = 1e-12, max_iter: int = 10_000
) -> np.ndarray:
    """Bradley–Terry strengths from a matrix of (possibly fractional) win counts.

    ``wins[i, j]`` is how often ``i`` beat ``j``. The model says ``P(i beats j) =
    p_i / (p_i + p_j)``; the maximum-likelihood strengths satisfy, for every ``i``,
    ``W_i = sum_j n_ij * p_i / (p_i + p_j)`` with ``W_i = sum_j wins[i, j]`` and
    ``n_ij = wins[i, j] + wins[j, i]``. Hunter's MM update solves this by iterating
    ``p_i <- W_i / sum_j n_ij / (p_i + p_j)`` and renormalising to ``sum p = 1``; each step
    increases the likelihood.

    ``prior`` adds that many virtual games split evenly (``prior / 2`` wins each way) to
    every pair that played; with ``prior > 0`` every strength is positive and the fit is
    unique. With ``prior == 0`` a player who never won gets strength 0 exactly, and a
    player who never played anyone keeps the uniform starting strength ``1 / m``. Returns
    strengths summing to 1.
    """
    w = np.asarray(wins, dtype=float)
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"wins must be a square matrix, got shape {w.shape}")
    if np.any(~np.isfinite(w)) or np.any(w < 0):
        raise ValueError("wins must be finite and non-negative")
    if prior < 0:
        raise ValueError(f"prior must be >= 0, got {prior}")
    m = w.shape[0]
    if m == 0:
        return np.zeros(0)
    w = w.copy()
    np.fill_diagonal(w, 0.0)
    games = w + w.T
    if prior > 0:
        w = w + (games > 0) * (prior / 2)
        games = w + w.T
    won = w.sum(axis=1)
    played = games.sum(axis=1) > 0
    p = np.full(m, 1.0 / m)
    for _ in range(max_iter):
        pair_sum = p[:, None] + p[None, :]
        # Pairs that never met contribute nothing; 0/0 can only happen for such pairs.
        rate = np.divide(games, pair_sum, out=np.zeros_like(games), where=games > 0)
        denom = rate.sum(axis=1)
        new = np.where(played, np.divide(won, denom, out=np.zeros(m), where=denom > 0), p)
        new = new / new.sum()
        done = np.max(np.abs(new - p)) <= tol
        p = new
        if done:
            break
    return p


def comparison_pairs(n: int, max_all_pairs: int, opponents: int) -> list[tuple[int, int]]:
    """Which candidates are compared: every pair when ``n <= max_all_pairs``; otherwise a
    circular round-robin where each candidate meets the next ``opponents`` candidates (so
    about ``n * opponents`` pairs, and the comparison graph stays connected)."""
    if n <= max_all_pairs:
        return [(i, j) for i in range(n) for j in range(i + 1, n)]
    pairs = {tuple(sorted((i, (i + d) % n))) for i in range(n) for d in range(1, opponents + 1)}
    return sorted((a, b) for a, b in pairs if a != b)


def preference(completion: Completion, a: str = "A", b: str = "B") -> float:
    """``P(A) / (P(A) + P(B))`` for the judge's first token, from its top log-probabilities.

    Token pieces are matched after stripping whitespace and brackets (``" A"``, ``"A"``,
    ``"(A"`` all count for A) and their probabilities summed. 0.5 when neither letter is
    among the top tokens.
    """
    if not completion.logprobs:
        return 0.5
    first = completion.logprobs[0]
    top = first.top or ((first.token, first.logprob),)
    mass = {a: 0.0, b: 0.0}
    for piece, lp in top:
        key = piece.strip().strip("([*").strip()
        if key in mass:
            mass[key] += math.exp(lp)
    total = mass[a] + mass[b]
    return mass[a] / total if total > 0 else 0.5


def soft_wins(
    n: int, pairs: Sequence[tuple[int, int]], prefs: Sequence[tuple[float, float]]
) -> np.ndarray:
    """Soft win counts from both-order verdicts.

    For pair ``(i, j)``, ``prefs = (p_ij, p_ji)``: ``p_ij`` is the judge's P(first shown
    wins) with ``i`` shown first, ``p_ji`` the same with ``j`` first. ``i`` is credited
    ``p_ij + (1 - p_ji)`` wins over ``j`` and ``j`` the rest of the two games.
    """
    wins = np.zeros((n, n))
    for (i, j), (p_ij, p_ji) in zip(pairs, prefs, strict=True):
        wins[i, j] += p_ij + (1.0 - p_ji)
        wins[j, i] += (1.0 - p_ij) + p_ji
    return wins


JUDGE_PARAMS = GREEDY.with_(max_tokens=1, logprobs=True, top_logprobs=20)


async def judge_pairs(
    engine: Engine,
    problem: Problem,
    texts: Sequence[str],
    pairs: Sequence[tuple[int, int]],
    verdict_prefix: str,
) -> tuple[list[tuple[float, float]], Usage]:
    """Both-order verdicts ``(P(i wins | i first), P(j wins | j first))`` for every pair,
    asked in one batched engine call."""
    requests = []
    for i, j in pairs:
        for first, second in ((i, j), (j, i)):
            msgs = restate(problem, JUDGE_PROMPT, a=texts[first], b=texts[second])
            requests.append(Request(msgs, JUDGE_PARAMS, partial=verdict_prefix))
    outs = await engine.generate(requests) if requests else []
    p = [preference(c) for [c] in outs]
    return [(p[2 * k], p[2 * k + 1]) for k in range(len(pairs))], usage_of(outs)


async def rank_pairwise(
    engine: Engine,
    problem: Problem,
    texts: Sequence[str],
    max_all_pairs: int,
    opponents: int,
    verdict_prefix: str,
    prior: float,
) -> tuple[np.ndarray, list[dict[str, Any]], Usage]:
    """Bradley–Terry strengths of ``texts`` judged pairwise by the model, the comparisons
    made (for the trace) and their usage."""
    pairs = comparison_pairs(len(texts), max_all_pairs, opponents)
    prefs, usage = await judge_pairs(engine, problem, texts, pairs, verdict_prefix)
    strengths = bradley_terry(soft_wins(len(texts), pairs, prefs), prior=prior)
    comparisons = [
        {"a": i, "b": j, "p_a_first": p_ij, "p_b_first": p_ji}
        for (i, j), (p_ij, p_ji) in zip(pairs, prefs, strict=True)
    ]
    return strengths, comparisons, usage


@dataclass(frozen=True)
class PairwiseRankConfig(SamplingConfig):
    """``max_all_pairs``: compare all pairs up to this many candidates *(choose: 8)*, else
    each candidate meets ``opponents`` neighbours in a circular round-robin. The judge's
    answer follows ``verdict_prefix``. ``prior``: virtual even games per compared pair in
    the Bradley–Terry fit, keeping strengths finite when a candidate never wins."""

    max_all_pairs: int = 8
    opponents: int = 3
    verdict_prefix: str = "Better response:"
    prior: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_all_pairs < 1:
            raise ValueError(f"max_all_pairs must be >= 1, got {self.max_all_pairs}")
        if self.opponents < 1:
            raise ValueError(f"opponents must be >= 1, got {self.opponents}")
        if self.prior < 0:
            raise ValueError(f"prior must be >= 0, got {self.prior}")


@register
class PairwiseRank(StrategyBase):
    name: ClassVar[str] = "pairwise-rank"
    summary: ClassVar[str] = "n samples judged pairwise by the model; Bradley–Terry picks the best"
    budget_means: ClassVar[str] = "number of candidates"
    Config = PairwiseRankConfig

    async def run(self, problem: Problem, engine: Engine, scorer: Any, budget: Budget) -> Result:
        cfg = self.config
        need_logprobs(engine, self.name)
        restate(problem, JUDGE_PROMPT, a="", b="")  # a clear error before any sampling
        samples = await sample(engine, problem, cfg.sampling(budget, logprobs=True), budget.n)
        texts = [c.text for c in samples]
        strengths, comparisons, judge_usage = await rank_pairwise(
            engine, problem, texts, cfg.max_all_pairs, cfg.opponents, cfg.verdict_prefix, cfg.prior
        )
        raw = [
            to_candidate(c, cfg.answer_kind, score=float(s))
            for c, s in zip(samples, strengths, strict=True)
        ]
        clusters = cluster_answers([c.answer for c in raw])
        cands = with_votes(raw, clusters)
        # Ties (e.g. one candidate, or a judge that never prefers either) go to the first.
        best_i = int(np.argmax(strengths))
        best = cands[best_i]
        return Result(
            answer=best.answer,
            best=best,
            candidates=cands,
            usage=usage_of(samples) + judge_usage,
            strategy=self.name,
            trace={
                "kind": "samples",
                "clusters": clusters,
                "winner": best.answer,
                "best_index": best_i,
                "scores": [float(s) for s in strengths],
                "comparisons": comparisons,
            },
        )
