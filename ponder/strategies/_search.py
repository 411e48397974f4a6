"""Machinery shared by the step-level search strategies (beam search, DVTS, particle
filtering, particle Gibbs, A*): their common settings, the search tree, batched step
generation and scoring, look-ahead rollouts and the final choice among finished paths.

A *step* is the text up to and including ``delimiter``. Every partial solution is sent to
the engine as the problem's messages plus the partial text (``Request.partial``), so the
engine's prefix cache serves the shared part. A step ends the solution when the model ends
its turn, when the solution reaches its token cap, or in the last round (which is asked to
finish the answer, as search-and-learn does); a step cut by ``max_step_tokens`` alone does
not end it: the next step continues the text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ponder.engines.base import Engine
from ponder.scoring.answers import cluster_answers, extract_answer
from ponder.scoring.base import ProcessScorer
from ponder.strategies.common import SamplingConfig, Step, usage_of
from ponder.strategies.resampling import AGGREGATIONS, aggregate_scores
from ponder.strategies.trace import TreeTrace
from ponder.types import (
    GREEDY,
    Budget,
    Candidate,
    Problem,
    Request,
    Result,
    SamplingParams,
    Usage,
)

SELECTIONS = ("best", "weighted", "majority")
"""How the final answer is chosen among finished paths: ``best`` (highest aggregated
score), ``weighted`` (answer cluster with the largest summed weight, then its best path),
``majority`` (largest answer cluster, then its best path)."""


@dataclass(frozen=True)
class StepSearchConfig(SamplingConfig):
    """Settings every step-level search shares.

    ``max_tokens`` caps a whole solution (and ``Budget.max_tokens`` caps it further);
    ``max_step_tokens`` caps one step; ``max_steps`` caps the number of steps (the last one
    is asked to finish the answer); ``aggregation`` turns a path's step scores into one score
    (see ``ponder.strategies.resampling.AGGREGATIONS``); ``finish_on``, when set, ends a path
    at the first step that contains it (its_hub's ``stop_token``, e.g. the task's answer
    phrase "The answer is"), where otherwise a path ends only at the end of the turn.
    """

    temperature: float = 0.8
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    max_tokens: int = 2048
    delimiter: str = "\n\n"
    max_step_tokens: int = 256
    max_steps: int = 40
    aggregation: str = "last"
    finish_on: str = field(default="", metadata={"named_when_set": True})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.delimiter, str) or not self.delimiter:
            raise ValueError('delimiter must be a non-empty string (the default is "\\n\\n")')
        if not isinstance(self.finish_on, str):
            raise ValueError(f"finish_on must be text (empty: off), got {self.finish_on!r}")
        if self.max_step_tokens < 1:
            raise ValueError(f"max_step_tokens must be >= 1, got {self.max_step_tokens}")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(
                f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {self.aggregation!r}"
            )

    def solution_cap(self, budget: Budget) -> int:
        """The most tokens one solution may have: ``max_tokens``, capped by the budget."""
        return self.sampling(budget).max_tokens


def check_selection(select: str) -> None:
    if select not in SELECTIONS:
        raise ValueError(f"select must be one of {', '.join(SELECTIONS)}, got {select!r}")


class SearchTree:
    """The tree of generated steps, stored as a ``TreeTrace`` (so the UI can draw it).

    Each node is one step: its ``text``, ``score`` (the scorer's value for the path ending
    there), ``finished``, step ``tokens``, the ``round`` it was made in and its
    ``finish_reason``; strategies add their own attributes.
    """

    def __init__(self, **extra: Any) -> None:
        self.trace = TreeTrace(**extra)
        self._path_tokens: list[int] = []

    @property
    def nodes(self) -> list[dict[str, Any]]:
        return self.trace.nodes

    def add(self, parent: int | None, step: Step, **attrs: Any) -> int:
        node = self.trace.add(
            parent,
            step.text,
            finished=step.finished,
            tokens=step.tokens,
            finish_reason=step.completion.finish_reason,
            **attrs,
        )
        self._path_tokens.append(self.tokens(parent) + step.tokens)
        return node

    def parent(self, node: int) -> int | None:
        parent: int | None = self.nodes[node]["parent"]
        return parent

    def path(self, node: int | None) -> list[int]:
        """Node ids from the first step to ``node``."""
        out: list[int] = []
        while node is not None:
            out.append(node)
            node = self.nodes[node]["parent"]
        return out[::-1]

    def steps(self, node: int | None) -> list[str]:
        return [self.nodes[i]["text"] for i in self.path(node)]

    def text(self, node: int | None) -> str:
        return "".join(self.steps(node))

    def tokens(self, node: int | None) -> int:
        """Tokens of the whole path ending at ``node`` (0 for the root)."""
        return 0 if node is None else self._path_tokens[node]

    def finished(self, node: int) -> bool:
        return bool(self.nodes[node]["finished"])

    def depth(self, node: int | None) -> int:
        """Number of steps on the path (0 for the root)."""
        return 0 if node is None else int(self.nodes[node]["depth"]) + 1

    def score(self, node: int) -> float:
        value = self.nodes[node]["score"]
        if value is None:
            raise ValueError(f"node {node} has not been scored")
        return float(value)

    def path_scores(self, node: int) -> list[float]:
        return [self.score(i) for i in self.path(node)]

    def aggregate(self, node: int, how: str) -> float:
        return aggregate_scores(self.path_scores(node), how)


async def generate_steps(
    engine: Engine,
    problem: Problem,
    prefixes: Sequence[tuple[str, int]],
    counts: Sequence[int],
    params: SamplingParams,
    seeds: Sequence[int | None],
    cfg: StepSearchConfig,
    cap: int,
    final: bool | Sequence[bool] = False,
) -> tuple[list[list[Step]], Usage]:
    """``counts[i]`` next steps of the partial solution ``prefixes[i] = (text, tokens)``,
    all in one batched engine call.

    Each request has its own seed and asks for at most ``max_step_tokens`` or, where
    ``final`` (one flag, or one per prefix), for the rest of the answer; never more than
    the solution cap ``cap`` leaves.
    """
    finals = [final] * len(prefixes) if isinstance(final, bool) else list(final)
    requests = []
    for (text, used), n, seed, last in zip(prefixes, counts, seeds, finals, strict=True):
        left = cap - used
        if left < 1:
            raise ValueError(f"partial solution already has {used} of {cap} tokens")
        stop = () if last else (cfg.delimiter,)
        max_tokens = left if last else min(cfg.max_step_tokens, left)
        p = params.with_(stop=stop, max_tokens=max_tokens, seed=seed)
        requests.append(Request(problem.messages, p, n=n, partial=text))
    if not requests:
        return [], Usage()
    outs = await engine.generate(requests)
    result: list[list[Step]] = []
    for (_, used), last, comps in zip(prefixes, finals, outs, strict=True):
        steps = []
        for c in comps:
            hit = not last and c.stop_reason == cfg.delimiter
            # Finished: the final step, an end of turn, or no room left under the cap (even
            # when the step ended on the delimiter exactly at the cap), or ``finish_on``.
            ended = last or used + c.tokens >= cap or (not hit and c.finish_reason != "length")
            ended = ended or (bool(cfg.finish_on) and cfg.finish_on in c.text)
            steps.append(Step(c.text + (cfg.delimiter if hit else ""), c.tokens, ended, c))
        result.append(steps)
    return result, usage_of(outs)


async def score_partials(
    scorer: ProcessScorer,
    problem: Problem,
    partials: Sequence[Sequence[str]],
    whole: bool = False,
) -> tuple[list[float], Usage]:
    """One batched scorer call: the score of each partial's last step (``score_steps``) or,
    with ``whole`` and a scorer that has ``score_prefixes`` (the judge), the scorer's
    judgement of the whole partial solution. A process reward model's last-step score
    already conditions on the whole prefix, so it needs no second method."""
    if not partials:
        return [], Usage()
    items = [list(p) for p in partials]
    prefixes = getattr(scorer, "score_prefixes", None) if whole else None
    if prefixes is not None:
        scores = await prefixes(problem, items)
    else:
        scores = await scorer.score_steps(problem, items)
    if len(scores.values) != len(partials):
        raise ValueError(
            f"scorer {scorer.name!r} returned {len(scores.values)} scores "
            f"for {len(partials)} partial solutions"
        )
    return list(scores.values), scores.usage


async def score_nodes(
    engine: Engine,
    scorer: ProcessScorer,
    problem: Problem,
    tree: SearchTree,
    nodes: Sequence[int],
    cfg: StepSearchConfig,
    cap: int,
    lookahead: int = 0,
) -> Usage:
    """Score ``nodes`` (one scorer call) and store each score on its node. With
    ``aggregation="last"`` the score must stand for the whole path, so a scorer that can
    judge whole prefixes (``score_prefixes``) is asked that question.

    With ``lookahead = k > 0`` (Snell et al. 2024), every unfinished node is first rolled
    out ``k`` more steps greedily (temperature 0, one batched call per step) and the node
    gets the score of the rollout's end; the rollout is recorded on the node as
    ``lookahead`` but is not part of the tree.
    """
    usage = Usage()
    rollouts: dict[int, list[str]] = {i: [] for i in nodes}
    active = [i for i in nodes if lookahead > 0 and not tree.finished(i)]
    used = {i: tree.tokens(i) for i in nodes}
    for _ in range(lookahead):
        if not active:
            break
        prefixes = [(tree.text(i) + "".join(rollouts[i]), used[i]) for i in active]
        steps, u = await generate_steps(
            engine, problem, prefixes, [1] * len(active), GREEDY, [None] * len(active), cfg, cap
        )
        usage = usage + u
        still = []
        for i, [step] in zip(active, steps, strict=True):
            rollouts[i].append(step.text)
            used[i] += step.tokens
            if not step.finished:
                still.append(i)
        active = still
    partials = [tree.steps(i) + rollouts[i] for i in nodes]
    whole = cfg.aggregation == "last"
    values, u = await score_partials(scorer, problem, partials, whole)
    for i, v in zip(nodes, values, strict=True):
        tree.trace.update(i, score=v)
        if rollouts[i]:
            tree.trace.update(i, lookahead="".join(rollouts[i]))
    return usage + u


def choose(
    tree: SearchTree,
    leaves: Sequence[int],
    rank: Sequence[float],
    select: str,
    answer_kind: str,
    weights: Sequence[float] | None = None,
    copies: Sequence[int] | None = None,
) -> tuple[int, tuple[Candidate, ...], dict[str, list[int]]]:
    """The chosen leaf (an index into ``leaves``), one candidate per leaf, and the answer
    clusters (answer key -> indices into ``leaves``).

    ``rank`` orders paths (higher is better; ties go to the earlier leaf). ``weighted``
    sums ``weights`` (default: ``rank``) per answer cluster, ``majority`` sums ``copies``
    (default: 1 per leaf); the heaviest cluster wins (ties: its best ``rank``) and its
    best-ranked leaf is chosen. A candidate's ``votes`` is its cluster's number of copies.
    Without any extractable answer every mode falls back to ``best``.
    """
    check_selection(select)
    if not leaves:
        raise ValueError("no path to choose from")
    n = len(leaves)
    mult = [1] * n if copies is None else list(copies)
    texts = [tree.text(leaf) for leaf in leaves]
    answers = [extract_answer(t, answer_kind) for t in texts]
    clusters = cluster_answers(answers)
    votes = {i: sum(mult[j] for j in ix) for ix in clusters.values() for i in ix}
    candidates = tuple(
        Candidate(
            text=texts[i],
            answer=answers[i],
            tokens=tree.tokens(leaf),
            votes=votes.get(i, 0),
            score=float(rank[i]),
            finish_reason=str(tree.nodes[leaf]["finish_reason"]),
        )
        for i, leaf in enumerate(leaves)
    )

    def best_of(ix: Sequence[int]) -> int:
        return max(ix, key=lambda i: (rank[i], -i))

    if select == "best" or not clusters:
        return best_of(range(n)), candidates, clusters
    w = (list(rank) if weights is None else list(weights)) if select == "weighted" else mult
    mass = {k: sum(w[i] for i in ix) for k, ix in clusters.items()}
    winner = max(clusters, key=lambda k: (mass[k], max(rank[i] for i in clusters[k])))
    return best_of(clusters[winner]), candidates, clusters


def build_result(
    tree: SearchTree,
    leaves: Sequence[int],
    chosen: int,
    candidates: tuple[Candidate, ...],
    clusters: dict[str, list[int]],
    usage: Usage,
    strategy: str,
) -> Result:
    """The ``Result`` of a search: ``leaves[chosen]`` is the answer; its path is marked as
    selected in the tree trace, which also records each candidate's leaf node."""
    tree.trace.select_path(leaves[chosen])
    trace = tree.trace.as_dict()
    trace.update(
        chosen=leaves[chosen],
        leaves=list(leaves),
        clusters=clusters,
        winner=candidates[chosen].answer,
    )
    best = candidates[chosen]
    return Result(
        answer=best.answer,
        best=best,
        candidates=candidates,
        usage=usage,
        strategy=strategy,
        trace=trace,
    )
