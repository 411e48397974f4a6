"""Particle Gibbs over reasoning steps.

Puri et al., "A Probabilistic Inference Approach to Inference-Time Scaling of LLMs using
Particle-Based Monte Carlo Methods" (2025), section on particle Gibbs: repeated sweeps of
conditional sequential Monte Carlo. The budget ``B`` is the number of particles over all
sweeps, as in the authors' code (its_hub): each of the ``iterations`` sweeps has
``N = B / iterations`` particles, so particle Gibbs and particle filtering at the same
budget generate about the same number of rollouts. The first iteration is plain particle
filtering with ``N`` particles. At the end of each iteration one particle is drawn from the softmax
weights of the final particles and becomes the *reference*; the next iteration runs
``N - 1`` free particles and keeps the reference: at every round the reference's prefix of
the same length joins the resampling pool (free particles can jump onto it and continue it
differently), and the reference itself survives to the end. After ``iterations`` sweeps
the answer is chosen from the last sweep's ``N`` particles as in particle filtering.

Weights, resampling and answer selection are those of ``particle-filter`` (same
settings). ``iterations`` is not fixed by the paper; 2 *(choose)* keeps 4 particles per
sweep at a budget of 8.
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
    iterations: int = 2

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
    budget_means: ClassVar[str] = (
        "particles over all iterations (each sweep has budget / iterations particles)"
    )
    Config = ParticleGibbsConfig

    async def run(self, problem: Problem, engine: Engine, scorer: Any, budget: Budget) -> Result:
        cfg = self.config
        prm = require_process(scorer, self.name)
        n = particles_per_sweep(budget.n, cfg.iterations, self.name)
        tree = SearchTree(particles=n, iterations=cfg.iterations)
        rng = np.random.default_rng(cfg.seed)
        params, cap = cfg.sampling(budget), cfg.solution_cap(budget)
        reference: list[int] = []
        result = await sweep(engine, prm, problem, tree, cfg, params, cap, n, rng)
        usage = result.usage
        events = list(result.events)
        iterations = [_summary(0, reference, result)]
        for it in range(1, cfg.iterations):
            k = int(rng.choice(len(result.particles), p=result.weights))
            reference = tree.path(result.particles[k])
            result = await sweep(
                engine, prm, problem, tree, cfg, params, cap, n, rng, reference, it
            )
            usage = usage + result.usage
            events.extend(result.events)
            iterations.append(_summary(it, reference, result))
        tree.trace.extra["resampling"] = events
        tree.trace.extra["iterations"] = iterations
        return select_particle(tree, replace(result, usage=usage), cfg, self.name)


def particles_per_sweep(budget: int, iterations: int, strategy: str) -> int:
    """The particles of one sweep: the budget split evenly over the iterations (its_hub's
    rule); a budget that does not split evenly, or leaves a sweep without a free particle
    beside the reference, is refused rather than rounded."""
    if budget % iterations:
        lower = budget - budget % iterations
        upper = lower + iterations
        nearest = f"{lower} or {upper}" if lower else f"{upper}"
        raise ValueError(
            f"{strategy}: the budget {budget} counts particles over all {iterations} "
            f"iterations and must be a multiple of iterations; use a budget of {nearest}, "
            f"or change iterations"
        )
    n = budget // iterations
    if iterations > 1 and n < 2:
        raise ValueError(
            f"{strategy} keeps one reference particle per iteration, so each of its "
            f"{iterations} sweeps needs at least 2 particles: a budget of at least "
            f"{2 * iterations} (got {budget}); or set iterations=1"
        )
    return n


def _summary(iteration: int, reference: list[int], result: Sweep) -> dict[str, Any]:
    return {
        "iteration": iteration,
        "reference": reference[-1] if reference else None,
        "particles": result.particles,
        "weights": [float(w) for w in result.weights],
    }
