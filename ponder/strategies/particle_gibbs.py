"""Particle Gibbs over reasoning steps.

Puri et al., "A Probabilistic Inference Approach to Inference-Time Scaling of LLMs using
Particle-Based Monte Carlo Methods" (2025), section on particle Gibbs: repeated sweeps of
conditional sequential Monte Carlo. The first iteration is plain particle filtering with
``N`` particles. At the end of each iteration one particle is drawn from the softmax
weights of the final particles and becomes the *reference*; the next iteration runs
``N - 1`` free particles and keeps the reference: at every round the reference's prefix of
the same length joins the resampling pool (free particles can jump onto it and continue it
differently), and the reference itself survives to the end. After ``iterations`` sweeps
the answer is chosen from the last sweep's ``N`` particles as in particle filtering.

Weights, resampling and answer selection are those of ``particle-filter`` (same
settings). ``iterations`` (default 4) is not fixed by the paper; *(choose)*.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from ponder.engines.base import Engine
from ponder.scoring.base import require_process
from ponder.strategies._search import SearchTree
from ponder.strategies.base import StrategyBase, register
from ponder.strategies.particle_filter import (
    ParticleFilterConfig,
    Sweep,
    select_particle,
    sweep,
)
from ponder.types import Budget, Problem, Result


@dataclass(frozen=True)
class ParticleGibbsConfig(ParticleFilterConfig):
    iterations: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")


@register
class ParticleGibbs(StrategyBase):
    name: ClassVar[str] = "particle-gibbs"
    summary: ClassVar[str] = (
        "particle Gibbs: repeated particle-filter sweeps that keep a reference particle "
        "(Puri et al. 2025)"
    )
    budget_means: ClassVar[str] = "particles per iteration (total rollouts ~ N x iterations)"
    Config = ParticleGibbsConfig

    async def run(self, problem: Problem, engine: Engine, scorer: Any, budget: Budget) -> Result:
        cfg = self.config
        prm = require_process(scorer, self.name)
        if cfg.iterations > 1 and budget.n < 2:
            raise ValueError(
                f"{self.name} keeps one reference particle per iteration, so it needs a "
                f"budget of at least 2 particles (got {budget.n}); or set iterations=1"
            )
        tree = SearchTree(particles=budget.n, iterations=cfg.iterations)
        rng = np.random.default_rng(cfg.seed)
        params, cap = cfg.sampling(budget), cfg.solution_cap(budget)
        reference: list[int] = []
        result = await sweep(engine, prm, problem, tree, cfg, params, cap, budget.n, rng)
        usage = result.usage
        events = list(result.events)
        iterations = [_summary(0, reference, result)]
        for it in range(1, cfg.iterations):
            k = int(rng.choice(len(result.particles), p=result.weights))
            reference = tree.path(result.particles[k])
            result = await sweep(
                engine, prm, problem, tree, cfg, params, cap, budget.n, rng, reference, it
            )
            usage = usage + result.usage
            events.extend(result.events)
            iterations.append(_summary(it, reference, result))
        tree.trace.extra["resampling"] = events
        tree.trace.extra["iterations"] = iterations
        return select_particle(tree, replace(result, usage=usage), cfg, self.name)


def _summary(iteration: int, reference: list[int], result: Sweep) -> dict[str, Any]:
    return {
        "iteration": iteration,
        "reference": reference[-1] if reference else None,
        "particles": result.particles,
        "weights": [float(w) for w in result.weights],
    }
