"""Diverse Verifier Tree Search (DVTS).

Beeching, Tunstall and Rush, "Scaling test-time compute with open models" (Hugging Face,
2024), in huggingface/search-and-learn: beam search loses diversity when one early step
scores well, so the budget ``N`` is split into ``N / M`` independent subtrees. Each subtree
starts from the question and, every round, samples ``M`` next steps of its current path,
scores them and greedily continues with the best (by the aggregated step score); a subtree
stops when its chosen step ends the solution (or at ``max_steps``, whose round is asked to
finish the answer). The answer is chosen by weighted best-of-N over the finished steps of
each subtree's last expansion (search-and-learn also returns the unfinished siblings; we
drop them, since they hold no answer). Subtrees never share paths or scores: their only
coupling is that their requests travel in the same batches.

When ``N`` is not a multiple of ``M``, the remainder is spread over the subtrees (some
sample ``M + 1`` steps per round) rather than left unspent, as search-and-learn would.

Defaults as in search-and-learn: ``M = 4``, ``max_steps = 40``, temperature 0.8, top-p 1.0,
aggregation ``last``; ``lookahead`` as in beam search.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ponder.engines.base import Engine
from ponder.scoring.base import require_process
from ponder.strategies._search import (
    SearchTree,
    StepSearchConfig,
    build_result,
    check_selection,
    choose,
    generate_steps,
    score_nodes,
)
from ponder.strategies.base import StrategyBase, register
from ponder.strategies.beam_search import beams_for, spread
from ponder.strategies.resampling import derive_seed
from ponder.types import Budget, Problem, Result, Usage


@dataclass(frozen=True)
class DVTSConfig(StepSearchConfig):
    beam_width: int = 4
    lookahead: int = 0
    select: str = "weighted"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beam_width < 1:
            raise ValueError(f"beam_width must be >= 1, got {self.beam_width}")
        if self.lookahead < 0:
            raise ValueError(f"lookahead must be >= 0, got {self.lookahead}")
        check_selection(self.select)


@register
class DVTS(StrategyBase):
    name: ClassVar[str] = "dvts"
    summary: ClassVar[str] = (
        "diverse verifier tree search: N/M independent subtrees, each greedy on the process "
        "scorer over M sampled next steps (Beeching et al. 2024)"
    )
    budget_means: ClassVar[str] = (
        "N: next steps generated per round; N / beam_width independent subtrees"
    )
    Config = DVTSConfig

    async def run(self, problem: Problem, engine: Engine, scorer: Any, budget: Budget) -> Result:
        cfg = self.config
        prm = require_process(scorer, self.name)
        m = cfg.beam_width
        subtrees = beams_for(budget.n, m, self.name)
        width = spread(budget.n, subtrees)
        cap = cfg.solution_cap(budget)
        params = cfg.sampling(budget)
        tree = SearchTree(subtrees=subtrees, beam_width=m, widths=width)
        usage = Usage()
        tips: list[int | None] = [None] * subtrees
        leaves: list[list[int]] = [[] for _ in range(subtrees)]
        alive = list(range(subtrees))
        for r in range(cfg.max_steps):
            last = r == cfg.max_steps - 1
            prefixes = [(tree.text(tips[s]), tree.tokens(tips[s])) for s in alive]
            seeds = [derive_seed(cfg.seed, r, s) for s in alive]
            steps, u = await generate_steps(
                engine, problem, prefixes, [width[s] for s in alive], params, seeds, cfg, cap, last
            )
            children = {
                s: [tree.add(tips[s], step, round=r, subtree=s) for step in group]
                for s, group in zip(alive, steps, strict=True)
            }
            flat = [c for s in alive for c in children[s]]
            lookahead = 0 if last else cfg.lookahead
            usage = usage + u
            usage = usage + await score_nodes(engine, prm, problem, tree, flat, cfg, cap, lookahead)
            still = []
            for s in alive:
                # max() keeps the first of equal scores: ties go to generation order.
                best = max(children[s], key=lambda c: tree.aggregate(c, cfg.aggregation))
                tree.trace.update(best, kept=True)
                tips[s] = best
                if tree.finished(best):
                    leaves[s] = [c for c in children[s] if tree.finished(c)]
                else:
                    still.append(s)
            alive = still
            if not alive:
                break
        flat_leaves = [c for group in leaves for c in group]
        scores = [tree.aggregate(c, cfg.aggregation) for c in flat_leaves]
        chosen, candidates, clusters = choose(
            tree, flat_leaves, scores, cfg.select, cfg.answer_kind
        )
        return build_result(tree, flat_leaves, chosen, candidates, clusters, usage, self.name)
