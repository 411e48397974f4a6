"""Step-level beam search on a process scorer.

Snell et al., "Scaling LLM Test-Time Compute Optimally can be More Effective than Scaling
Model Parameters" (2024), as implemented in huggingface/search-and-learn: with a budget of
``N`` and a beam width ``M``,

1. sample ``N`` first steps from the question and score each;
2. keep the ``N / M`` best unfinished paths (by the aggregated step score) — the beams;
3. expand the beams into ``N`` next steps again (``M`` per beam; when fewer beams are
   left, the ``N`` steps are spread evenly over them), score; finished paths leave the
   search and are collected; repeat from 2 until no beam is left or ``max_steps`` rounds
   (the last round is asked to finish the answer);
4. keep the ``N`` best finished paths and pick the answer by weighted best-of-N (the
   answer whose paths' scores sum highest, then its best path), as the paper does.

``lookahead = k`` is the paper's lookahead search: each new step is scored at the end of a
``k``-step greedy rollout (not kept). Defaults: ``M = 4``, ``max_steps = 40``, temperature
0.8, top-p 1.0, score aggregation ``last`` (search-and-learn's recipe).
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
from ponder.strategies.resampling import derive_seed
from ponder.types import Budget, Problem, Result, Usage


@dataclass(frozen=True)
class BeamSearchConfig(StepSearchConfig):
    beam_width: int = 4
    lookahead: int = 0
    select: str = "weighted"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beam_width < 1:
            raise ValueError(f"beam_width must be >= 1, got {self.beam_width}")
        if self.lookahead < 0:
            raise ValueError(f"lookahead must be >= 0 (0: plain beam search), got {self.lookahead}")
        check_selection(self.select)


def spread(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` counts differing by at most one (larger ones first)."""
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


def beams_for(n: int, width: int, strategy: str) -> int:
    """How many beams (or subtrees) a budget of ``n`` steps per round keeps: ``n // width``."""
    if width > n:
        raise ValueError(
            f"{strategy}: beam_width {width} is larger than the budget {n}; the budget counts "
            f"the steps generated per round and must be >= beam_width (lower beam_width or "
            f"raise the budget)"
        )
    return n // width


@register
class BeamSearch(StrategyBase):
    name: ClassVar[str] = "beam-search"
    summary: ClassVar[str] = (
        "step-level beam search on a process scorer: keep N/M beams, expand each into M "
        "next steps (Snell et al. 2024)"
    )
    budget_means: ClassVar[str] = "N: next steps generated per round; N / beam_width beams are kept"
    Config = BeamSearchConfig

    async def run(self, problem: Problem, engine: Engine, scorer: Any, budget: Budget) -> Result:
        cfg = self.config
        prm = require_process(scorer, self.name)
        n = budget.n
        keep = beams_for(n, cfg.beam_width, self.name)
        cap = cfg.solution_cap(budget)
        params = cfg.sampling(budget)
        tree = SearchTree(n_beams=keep, beam_width=cfg.beam_width)
        rounds: list[dict[str, Any]] = []
        usage = Usage()
        beams: list[int | None] = [None]
        finished: list[int] = []
        for r in range(cfg.max_steps):
            last = r == cfg.max_steps - 1
            counts = spread(n, len(beams))
            prefixes = [(tree.text(b), tree.tokens(b)) for b in beams]
            seeds = [derive_seed(cfg.seed, r, j) for j in range(len(beams))]
            steps, u = await generate_steps(
                engine, problem, prefixes, counts, params, seeds, cfg, cap, final=last
            )
            children = [
                tree.add(b, step, round=r)
                for b, group in zip(beams, steps, strict=True)
                for step in group
            ]
            lookahead = 0 if last else cfg.lookahead
            usage = usage + u
            usage = usage + await score_nodes(
                engine, prm, problem, tree, children, cfg, cap, lookahead
            )
            done = [c for c in children if tree.finished(c)]
            finished.extend(done)
            alive = [c for c in children if not tree.finished(c)]
            # sorted() is stable with reverse=True: equal scores keep generation order.
            ranked = sorted(alive, key=lambda c: tree.aggregate(c, cfg.aggregation), reverse=True)
            kept = ranked[:keep]
            for c in kept:
                tree.trace.update(c, kept=True)
            rounds.append({"round": r, "expanded": list(beams), "kept": kept, "finished": done})
            if not kept:
                break
            beams = list(kept)
        tree.trace.extra["rounds"] = rounds
        # Every path ends by the last round, so ``finished`` holds at least one path.
        ranked = sorted(finished, key=lambda c: tree.aggregate(c, cfg.aggregation), reverse=True)
        leaves = ranked[:n]
        scores = [tree.aggregate(c, cfg.aggregation) for c in leaves]
        chosen, candidates, clusters = choose(tree, leaves, scores, cfg.select, cfg.answer_kind)
        return build_result(tree, leaves, chosen, candidates, clusters, usage, self.name)
