"""Particle filtering over reasoning steps.

Puri et al., "A Probabilistic Inference Approach to Inference-Time Scaling of LLMs using
Particle-Based Monte Carlo Methods" (2025). The language model is the transition kernel
of a state-space model and the process scorer its (approximate) emission likelihood; a
set of ``N`` particles (partial solutions) tracks the posterior over good solutions:

1. every unfinished particle is extended by one step (sampled at temperature 0.8), and
   the new step is scored by the process scorer;
2. each particle gets the weight ``w_i = softmax(f(a_i) / T)``, where ``a_i`` aggregates
   the particle's step scores (default ``last``: the scorer's judgement of the whole
   prefix, the paper's "model aggregation"), ``f`` is ``logit`` for scores in [0, 1] (as
   in the authors' code, its_hub) or the identity (``weights="score"``), and ``T = 1``;
3. ``N`` particles are resampled from the weights (multinomially, as in the paper, or
   systematically). Finished particles are not extended but keep their final weight; with
   ``resample_inactive`` (the authors' code) they take part in resampling (a good finished
   particle can be copied, a bad one dropped), otherwise they stay fixed and only the
   unfinished ones are resampled among themselves;
4. repeat until every particle has finished (or ``max_steps``; that round is asked to
   finish the answer).

The answer is the particle with the highest final weight (``select="best"``, the authors'
default) or a weighted vote (``select="weighted"``: the answer whose particles' weights sum
highest). The trace records, per round, the resampling pool, weights, effective sample
size and the ancestor index of every new particle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ponder.engines.base import Engine
from ponder.scoring.base import ProcessScorer, require_process
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
from ponder.strategies.resampling import (
    RESAMPLERS,
    derive_seed,
    effective_sample_size,
    logit,
    resample,
    softmax_weights,
)
from ponder.types import Budget, Problem, Result, SamplingParams, Usage

WEIGHT_TRANSFORMS = ("logit", "score")


@dataclass(frozen=True)
class ParticleFilterConfig(StepSearchConfig):
    softmax_temperature: float = 1.0
    weights: str = "logit"
    resampling: str = "multinomial"
    resample_inactive: bool = True
    select: str = "best"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.softmax_temperature > 0:
            raise ValueError(
                "softmax_temperature must be > 0 (1.0 in the paper), "
                f"got {self.softmax_temperature}"
            )
        if self.weights not in WEIGHT_TRANSFORMS:
            raise ValueError(
                f"weights must be one of {', '.join(WEIGHT_TRANSFORMS)}, got {self.weights!r}"
            )
        if self.resampling not in RESAMPLERS:
            raise ValueError(
                f"resampling must be one of {', '.join(RESAMPLERS)}, got {self.resampling!r}"
            )
        check_selection(self.select)


def particle_weights(
    aggregated: Sequence[float], cfg: ParticleFilterConfig, scorer: str
) -> np.ndarray:
    """``softmax(f(a) / T)`` over the particles' aggregated scores ``a``."""
    values = np.asarray(aggregated, dtype=np.float64)
    if cfg.weights == "logit":
        if np.any((values < 0) | (values > 1)):
            raise ValueError(
                f"weights='logit' needs scores in [0, 1], but scorer {scorer!r} gave "
                f"{values.tolist()}; use weights='score' for scores on another scale"
            )
        values = logit(values)
    return softmax_weights(values, cfg.softmax_temperature)


@dataclass
class Sweep:
    """One run of the filter: the final particles (leaf node ids, with repeats), their
    weights, the resampling events and what it cost."""

    particles: list[int]
    weights: np.ndarray
    events: list[dict[str, Any]]
    usage: Usage


async def sweep(
    engine: Engine,
    prm: ProcessScorer,
    problem: Problem,
    tree: SearchTree,
    cfg: ParticleFilterConfig,
    params: SamplingParams,
    cap: int,
    n: int,
    rng: np.random.Generator,
    reference: Sequence[int] = (),
    iteration: int = 0,
) -> Sweep:
    """Filter ``n`` particles to the end, optionally conditioned on a ``reference`` path.

    With a reference (conditional SMC, for particle Gibbs) only ``n - 1`` particles are
    free: at round ``t`` the reference contributes its own prefix of ``t + 1`` steps to the
    resampling pool (or its whole path, when shorter), and the reference is the ``n``-th
    final particle.
    """
    n_free = n - 1 if reference else n
    particles: list[int | None] = [None] * n_free  # None: nothing generated yet
    events: list[dict[str, Any]] = []
    usage = Usage()
    for r in range(cfg.max_steps):
        active = [i for i, p in enumerate(particles) if p is None or not tree.finished(p)]
        if not active:
            break
        last = r == cfg.max_steps - 1
        # Copies of one particle become one request with n = copies: distinct samples, and
        # the engine computes their shared prefix once.
        groups: dict[int | None, list[int]] = {}
        for i in active:
            groups.setdefault(particles[i], []).append(i)
        parents = list(groups)
        prefixes = [(tree.text(p), tree.tokens(p)) for p in parents]
        seeds = [derive_seed(cfg.seed, iteration, r, j) for j in range(len(parents))]
        counts = [len(groups[p]) for p in parents]
        steps, u = await generate_steps(
            engine, problem, prefixes, counts, params, seeds, cfg, cap, final=last
        )
        usage = usage + u
        new = []
        for p, group in zip(parents, steps, strict=True):
            for i, step in zip(groups[p], group, strict=True):
                node = tree.add(p, step, round=r, iteration=iteration)
                particles[i] = node
                new.append(node)
        usage = usage + await score_nodes(engine, prm, problem, tree, new, cfg, cap)

        current = [p for p in particles if p is not None]
        pool = current + ([reference[min(r, len(reference) - 1)]] if reference else [])
        agg = [tree.aggregate(p, cfg.aggregation) for p in pool]
        weights = particle_weights(agg, cfg, prm.name)
        for node, w in zip(pool, weights, strict=True):
            tree.trace.update(node, weight=float(w))
        if cfg.resample_inactive:
            slots = list(range(n_free))
            eligible = list(range(len(pool)))
        else:
            slots = [i for i in range(n_free) if not tree.finished(current[i])]
            eligible = [j for j, p in enumerate(pool) if not tree.finished(p)]
        ancestors: list[int] = []
        if slots:
            drawn = resample(weights[eligible], len(slots), rng, cfg.resampling)
            ancestors = [eligible[k] for k in drawn]
            for slot, a in zip(slots, ancestors, strict=True):
                particles[slot] = pool[a]
        events.append(
            {
                "iteration": iteration,
                "round": r,
                "pool": pool,
                "weights": [float(w) for w in weights],
                "ess": effective_sample_size(weights),
                "slots": slots,
                "ancestors": ancestors,
                "particles": list(particles),
            }
        )
    final = [p for p in particles if p is not None] + ([reference[-1]] if reference else [])
    agg = [tree.aggregate(p, cfg.aggregation) for p in final]
    return Sweep(final, particle_weights(agg, cfg, prm.name), events, usage)


def select_particle(
    tree: SearchTree, sweep_: Sweep, cfg: ParticleFilterConfig, strategy: str
) -> Result:
    """The answer from the final particles: copies of one leaf are one candidate whose
    vote weight is the sum of their weights."""
    leaves = list(dict.fromkeys(sweep_.particles))
    index = {leaf: k for k, leaf in enumerate(leaves)}
    copies = [0] * len(leaves)
    mass = [0.0] * len(leaves)
    for p, w in zip(sweep_.particles, sweep_.weights, strict=True):
        copies[index[p]] += 1
        mass[index[p]] += float(w)
    rank = [tree.aggregate(leaf, cfg.aggregation) for leaf in leaves]
    chosen, candidates, clusters = choose(
        tree, leaves, rank, cfg.select, cfg.answer_kind, weights=mass, copies=copies
    )
    return build_result(tree, leaves, chosen, candidates, clusters, sweep_.usage, strategy)


@register
class ParticleFilter(StrategyBase):
    name: ClassVar[str] = "particle-filter"
    summary: ClassVar[str] = (
        "particle filtering over steps: extend, weight by softmax of process scores, "
        "resample (Puri et al. 2025)"
    )
    budget_means: ClassVar[str] = "number of particles"
    Config = ParticleFilterConfig

    async def run(self, problem: Problem, engine: Engine, scorer: Any, budget: Budget) -> Result:
        cfg = self.config
        prm = require_process(scorer, self.name)
        tree = SearchTree(particles=budget.n)
        rng = np.random.default_rng(cfg.seed)
        params, cap = cfg.sampling(budget), cfg.solution_cap(budget)
        result = await sweep(engine, prm, problem, tree, cfg, params, cap, budget.n, rng)
        tree.trace.extra["resampling"] = result.events
        tree.trace.extra["final_weights"] = [float(w) for w in result.weights]
        return select_particle(tree, result, cfg, self.name)
