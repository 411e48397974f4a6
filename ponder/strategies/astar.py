"""A*-style best-first search over partial solutions.

Chatziveroglou, "A*-Decoding: Token-Efficient Inference Scaling" (2025): decoding as a
search in the space of partial solutions, guided by a process scorer. A priority queue
holds every generated, unexpanded partial solution. Each round pops the best
``frontier_batch`` unfinished nodes, samples ``k`` next steps of each (one batched engine
call), scores them (one scorer call) and pushes them. The search stops when the best node
in the queue is a finished solution (it is the answer), when the frontier is empty, or
when the token budget is spent; then the answer is the best finished solution found.

The cost *(choose)*: ``f(s) = -aggregate(step scores of s)``, lowest first; ties go to
the earlier node. With the default aggregation ``min`` the cost never decreases along a
path (a path is as good as its weakest step), like A* with a consistent heuristic: when a
finished solution reaches the top of the queue, no unexpanded partial solution can lead
to a better one. ``last`` (the scorer's estimate for the whole prefix) is the other
natural choice.

Budget: ``k = Budget.n`` next steps per expansion. The search stops once it has generated
``token_budget`` tokens (default: ``Budget.total_tokens`` when set, else ``k`` times the
solution cap, the tokens best-of-``k`` may spend). ``Budget.max_tokens`` is the per-sample
cap (the server sets it from the request's ``max_tokens``): it caps one solution, never the
search. Nodes at ``max_steps - 1`` are expanded by finishing the answer.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from ponder.engines.base import Engine
from ponder.scoring.base import require_process
from ponder.strategies._search import (
    SearchTree,
    StepSearchConfig,
    build_result,
    choose,
    generate_steps,
    score_nodes,
)
from ponder.strategies.base import StrategyBase, register
from ponder.strategies.resampling import derive_seed
from ponder.types import Budget, Problem, Result, Usage


@dataclass(frozen=True)
class AStarConfig(StepSearchConfig):
    aggregation: str = "min"
    frontier_batch: int = 1
    token_budget: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.frontier_batch < 1:
            raise ValueError(f"frontier_batch must be >= 1, got {self.frontier_batch}")
        if self.token_budget is not None and self.token_budget < 1:
            raise ValueError(f"token_budget must be >= 1 (or None), got {self.token_budget}")


@register
class AStar(StrategyBase):
    name: ClassVar[str] = "astar"
    summary: ClassVar[str] = (
        "best-first (A*-style) search over steps: expand the best-scored partial solution "
        "until a finished one is best (Chatziveroglou 2025)"
    )
    budget_means: ClassVar[str] = (
        "k: next steps sampled per expansion (search stops at token_budget tokens)"
    )
    Config = AStarConfig

    async def run(self, problem: Problem, engine: Engine, scorer: Any, budget: Budget) -> Result:
        cfg = self.config
        prm = require_process(scorer, self.name)
        k = budget.n
        cap = cfg.solution_cap(budget)
        params = cfg.sampling(budget)
        token_budget = cfg.token_budget or budget.total_tokens or k * cap
        tree = SearchTree(k=k, token_budget=token_budget)
        usage = Usage()
        queue: list[tuple[float, int]] = []
        expansions: list[int] = []
        goal: int | None = None
        to_expand: list[int | None] = [None]
        # Every step costs a real engine at least one token: the budget bounds the rounds.
        for r in range(token_budget):
            prefixes = [(tree.text(p), tree.tokens(p)) for p in to_expand]
            seeds = [derive_seed(cfg.seed, r, j) for j in range(len(to_expand))]
            last = [tree.depth(p) == cfg.max_steps - 1 for p in to_expand]
            steps, u = await generate_steps(
                engine, problem, prefixes, [k] * len(to_expand), params, seeds, cfg, cap, last
            )
            children = [
                tree.add(p, step, round=r)
                for p, group in zip(to_expand, steps, strict=True)
                for step in group
            ]
            usage = usage + u
            usage = usage + await score_nodes(engine, prm, problem, tree, children, cfg, cap)
            for c in children:
                heapq.heappush(queue, (-tree.aggregate(c, cfg.aggregation), c))
            if usage.tokens_generated >= token_budget:
                break
            to_expand = []
            while queue and len(to_expand) < cfg.frontier_batch:
                top = queue[0][1]
                if tree.finished(top):
                    if not to_expand:
                        goal = top
                    break
                heapq.heappop(queue)
                tree.trace.update(top, expanded=len(expansions))
                expansions.append(top)
                to_expand.append(top)
            if goal is not None or not to_expand:
                break
        tree.trace.extra["expansions"] = expansions
        tree.trace.extra["goal"] = goal

        def score_of(node: int) -> float:
            return tree.aggregate(node, cfg.aggregation)

        finished = [i for i in range(len(tree.nodes)) if tree.finished(i)]
        if finished:
            leaves = finished
        else:
            # Token budget spent before any solution ended: offer the best partial one.
            leaves = [max(range(len(tree.nodes)), key=lambda i: (score_of(i), -i))]
        rank = [score_of(i) for i in leaves]
        chosen, candidates, clusters = choose(tree, leaves, rank, "best", cfg.answer_kind)
        if not finished:
            candidates = tuple(replace(c, finish_reason="length") for c in candidates)
        return build_result(tree, leaves, chosen, candidates, clusters, usage, self.name)
