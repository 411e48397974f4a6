"""Selection rules: which of ``k`` drawn samples a sampling strategy answers with.

Each function here is a pure function of the samples' evidence (extracted answers, token
counts, log-probabilities, scorer values, confidences) and returns a ``Selection``: the
index of the chosen sample, the answer clusters and what the rule computed on the way.
The live strategies (self-consistency, weighted-vote, rpc, best-of-n, weighted-best-of-n,
best-of-majority, sample, offline confidence-vote) and the pool estimators
(``ponder.evals.estimators``) call the same functions, so an estimate computed from a stored
pool of samples is exactly what the live strategy would have answered from those samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from ponder.scoring.answers import cluster_answers
from ponder.strategies import confidence, numerics, rpc_pruning
from ponder.types import Candidate, Completion


@dataclass(frozen=True)
class Selection:
    """The chosen sample (``index``; None when no sample carries an answer), the answer
    clusters (key -> sample indices), the winning cluster key and the rule's own numbers."""

    index: int | None
    clusters: dict[str, list[int]] = field(default_factory=dict)
    winner: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def cluster(answers: Sequence[str | None]) -> dict[str, list[int]]:
    """``cluster_answers(answers)``, computed once per sequence of distinct answers.

    ``cluster_answers`` puts an answer in the cluster that its first occurrence joined, and
    where that is depends only on the distinct answers seen before it; so the clusters are
    a function of the distinct answers in first-seen order, expanded to indices. Subsets of
    one pool share few such sequences, which makes estimating from many subsets cheap."""
    distinct = tuple(dict.fromkeys(a for a in answers if a is not None))
    keyed = _cluster_distinct(distinct)
    key_of = {distinct[j]: key for key, js in keyed.items() for j in js}
    clusters: dict[str, list[int]] = {key: [] for key in keyed}
    for i, a in enumerate(answers):
        if a is not None:
            clusters[key_of[a]].append(i)
    return clusters


@lru_cache(maxsize=1 << 16)
def _cluster_distinct(distinct: tuple[str, ...]) -> dict[str, list[int]]:
    return cluster_answers(list(distinct))


def path_log_weight(completion: Completion, length_normalize: bool) -> float:
    """The log path weight of one sample (``numerics.log_path_weight``): mean (length
    normalised) or sum of its token log-probabilities; ``-inf`` for an empty path."""
    w = numerics.log_path_weight([t.logprob for t in (completion.logprobs or ())], length_normalize)
    return -math.inf if w is None else w


def path_probability(candidate: Candidate) -> float:
    """RPC's path probability ``exp(mean token logprob)``; 0 for a path without tokens."""
    return 0.0 if candidate.mean_logprob is None else math.exp(candidate.mean_logprob)


def select_first_accepted(
    candidates: Sequence[Candidate], scores: Sequence[float] | None, threshold: float
) -> Selection:
    """``sample``: with scores, the first sample scoring ``>= threshold`` (else the first
    best-scoring one); without, the first sample with the highest mean token log-prob when
    every sample has one, else the first sample."""
    if scores is not None:
        passed = [i for i, s in enumerate(scores) if s >= threshold]
        pick = passed[0] if passed else max(range(len(candidates)), key=lambda i: scores[i])
        return Selection(pick, details={"passed": passed})
    lps = [c.mean_logprob for c in candidates]
    by_logprob = all(lp is not None for lp in lps)
    pick = max(range(len(candidates)), key=lambda i: lps[i] or 0.0) if by_logprob else 0
    return Selection(pick, details={"picked_by": "mean-logprob" if by_logprob else "first"})


UNFINISHED = ("vote", "drop")


def check_unfinished(unfinished: str) -> None:
    if unfinished not in UNFINISHED:
        raise ValueError(
            f"unfinished must be one of {', '.join(UNFINISHED)} (how samples cut off by the "
            f"token cap vote), got {unfinished!r}"
        )


def ballots(candidates: Sequence[Candidate], unfinished: str = "vote") -> list[Candidate]:
    """The candidates as a vote reads them. ``unfinished="vote"``: as they are.
    ``"drop"``: a sample cut off by the token cap (``finish_reason == "length"``) casts no
    vote (its answer is blanked): what is read from an unfinished solution is seldom its
    answer. When no sample that ended on its own has an answer, every sample votes, as with
    ``"vote"``. Positions are kept, so a rule's pick indexes the candidates as given."""
    check_unfinished(unfinished)
    ended = [c.finish_reason != "length" and c.answer is not None for c in candidates]
    if unfinished == "vote" or not any(ended):
        return list(candidates)
    return [c if e else replace(c, answer=None) for c, e in zip(candidates, ended, strict=True)]


def select_majority(candidates: Sequence[Candidate]) -> Selection:
    """Self-consistency: the largest answer cluster (ties: the cluster whose most
    confident member has the higher mean token log-prob, then the one whose shortest
    member is shorter); its shortest member (first on ties)."""
    clusters = cluster([c.answer for c in candidates])
    if not clusters:
        return Selection(None, clusters)

    def rank(key: str) -> tuple[int, float, int]:
        members = [candidates[i] for i in clusters[key]]
        lps = [m.mean_logprob for m in members if m.mean_logprob is not None]
        best_lp = max(lps) if lps else -math.inf
        return (-len(members), -best_lp, min(m.tokens for m in members))

    winner = min(clusters, key=rank)
    pick = min(clusters[winner], key=lambda i: candidates[i].tokens)
    return Selection(pick, clusters, winner)


def select_weighted(
    candidates: Sequence[Candidate], weights: Sequence[float], log_space: bool = False
) -> Selection:
    """Weighted vote (and weighted best-of-n): each answer's total is the sum of its
    samples' ``weights`` (``log_space``: the weights are logs, the total is
    ``log sum exp``); the highest total wins (ties: larger cluster, then first seen); its
    member with the highest weight (first on ties)."""
    clusters = cluster([c.answer for c in candidates])
    if log_space:
        totals = numerics.cluster_log_sums(clusters, weights)
    else:
        totals = numerics.cluster_sums(clusters, weights)
    winner = numerics.leader(totals, clusters)
    pick = None if winner is None else max(clusters[winner], key=lambda i: weights[i])
    return Selection(pick, clusters, winner, {"cluster_weights": totals})


def select_rpc(candidates: Sequence[Candidate], pruning: str, prune_quantile: float) -> Selection:
    """RPC over candidates: ``rpc_choice`` with each path's probability
    ``exp(mean token logprob)`` (``path_probability``)."""
    return rpc_choice(
        [c.text for c in candidates],
        [c.answer for c in candidates],
        [path_probability(c) for c in candidates],
        pruning,
        prune_quantile,
    )


def rpc_choice(
    texts: Sequence[str],
    answers: Sequence[str | None],
    probabilities: Sequence[float],
    pruning: str,
    prune_quantile: float,
) -> Selection:
    """RPC: prune unlikely paths (``rpc_pruning.rpc_prune`` on the path probabilities), then
    the answer with the largest sum of distinct kept paths' probabilities; its most likely
    member."""
    probs = list(probabilities)
    keep, mix = rpc_pruning.rpc_prune(probs, pruning, prune_quantile)
    clusters = cluster([a if k else None for a, k in zip(answers, keep, strict=True)])
    scores = numerics.distinct_path_sums(clusters, texts, probs)
    winner = numerics.leader(scores, clusters)
    pick = None if winner is None else max(clusters[winner], key=lambda i: probs[i])
    details = {"probabilities": probs, "keep": keep, "mixture": mix, "answer_scores": scores}
    return Selection(pick, clusters, winner, details)


def best_scored(candidates: Sequence[Candidate], scores: Sequence[float | None]) -> int:
    """Best-of-n: the highest score (None counts as 0), ties to the shorter sample, then the
    earlier one."""
    return min(range(len(candidates)), key=lambda i: _best_key(candidates, scores, i))


def _best_key(
    candidates: Sequence[Candidate], scores: Sequence[float | None], i: int
) -> tuple[float, int, int]:
    return (-(scores[i] or 0.0), candidates[i].tokens, i)


def select_best(candidates: Sequence[Candidate], scores: Sequence[float]) -> Selection:
    """Best-of-n over every sample (``best_scored``)."""
    return Selection(best_scored(candidates, scores))


def frequent_answers(clusters: dict[str, list[int]], n: int, alpha: float, top_k: int) -> list[str]:
    """Keys of the clusters with ``len / n >= alpha``, most frequent first (ties: first seen),
    cut to ``top_k`` when it is > 0; the most frequent clusters when none reach ``alpha``."""
    ranked = sorted(clusters, key=lambda k: -len(clusters[k]))  # stable: first seen wins ties
    keep = [k for k in ranked if len(clusters[k]) >= alpha * n]
    if not keep and ranked:
        most = len(clusters[ranked[0]])
        keep = [k for k in ranked if len(clusters[k]) == most]
    return keep[:top_k] if top_k else keep


def majority_survivors(
    candidates: Sequence[Candidate], alpha: float, top_k: int
) -> tuple[dict[str, list[int]], list[str], list[int]]:
    """Best-of-majority's frequency filter: the clusters, the surviving answer keys and the
    surviving sample indices (ascending): the only samples that need a score."""
    clusters = cluster([c.answer for c in candidates])
    survivors = frequent_answers(clusters, len(candidates), alpha, top_k)
    members = sorted(i for k in survivors for i in clusters[k])
    return clusters, survivors, members


def select_best_of_majority(
    candidates: Sequence[Candidate],
    clusters: dict[str, list[int]],
    survivors: Sequence[str],
    members: Sequence[int],
    scores: Sequence[float | None],
) -> Selection:
    """Best-of-majority: among the surviving samples, the best-scored (``best_scored``'s
    order); ``scores`` is needed only at the ``members``."""
    if not members:
        return Selection(None, clusters, details={"survivors": list(survivors)})
    pick = min(members, key=lambda i: _best_key(candidates, scores, i))
    winner = next(k for k in survivors if pick in clusters[k])
    return Selection(pick, clusters, winner, {"survivors": list(survivors)})


def select_confident(
    candidates: Sequence[Candidate], confidences: Sequence[float], keep_percent: float
) -> Selection:
    """Offline DeepConf: keep the samples whose confidence is at least the
    ``(100 - keep_percent)``-th percentile (``confidence.confidence_filter``), then
    ``confident_vote`` among the kept ones."""
    keep, threshold = confidence.confidence_filter(confidences, keep_percent)
    voters = [i for i, k in enumerate(keep) if k]
    chosen = confident_vote([c.answer for c in candidates], confidences, voters)
    chosen.details["threshold"] = threshold
    return chosen


def confident_vote(
    answers: Sequence[str | None], confidences: Sequence[float], voters: Sequence[int]
) -> Selection:
    """DeepConf's vote: the ``voters`` (indices; the others do not vote) vote for their
    answers weighted by confidence; the highest total wins (ties: larger cluster, then first
    seen); its most confident member."""
    voting = set(voters)
    clusters = cluster([a if i in voting else None for i, a in enumerate(answers)])
    totals = numerics.cluster_sums(clusters, confidences)
    winner = numerics.leader(totals, clusters)
    pick = None if winner is None else max(clusters[winner], key=lambda i: confidences[i])
    return Selection(pick, clusters, winner, {"voters": sorted(voting), "vote_weights": totals})


def majority(candidates: Sequence[Candidate]) -> tuple[str | None, dict[str, list[int]]]:
    """The winning cluster key and all clusters (key -> candidate indices), by
    ``select_majority``: most members; ties broken by the best mean log-probability in
    the cluster, then by the shortest member's token count. ``None`` when no candidate
    has an answer."""
    chosen = select_majority(candidates)
    return chosen.winner, chosen.clusters


def with_votes(
    candidates: Sequence[Candidate], clusters: dict[str, list[int]]
) -> tuple[Candidate, ...]:
    """The candidates with ``votes`` set to the size of their answer's cluster."""
    votes = {i: len(ix) for ix in clusters.values() for i in ix}
    return tuple(replace(c, votes=votes.get(i, 0)) for i, c in enumerate(candidates))
