"""Fitting a recipe for ``auto`` from sample pools, offline.

A pool holds, per problem and seed, ``n`` samples with their answers, tokens, statistics,
scores and hidden-grader verdicts. A recipe that draws ``k`` samples is simulated on a pool
by replaying it (``ponder.strategies.recipes.replay``, the same policy functions ``auto``
runs) over the pool's first ``k`` samples in drawing order; its cost on that pool is those
samples' tokens (and scorer calls). Stage 0 of a live ``auto`` run with seed ``s`` draws
exactly the first samples of the pool drawn with seed ``s``; later stages draw with seeds
``s + 1, s + 2, ...``, i.e. fresh independent samples from the same distribution as the
pool's next ones, so the simulated accuracy and tokens are unbiased estimates of the live
recipe's (exactly equal when given the same samples, which the tests check).

``tune`` compares every fixed pool rule at every ``k`` (``ponder.evals.estimators``) with a
grid of recipes on the development problems, fits the recipe (most accurate within
``max_tokens_per_problem``; or, without a budget, the cheapest that reaches the best fixed
rule's accuracy), and measures the fitted recipe and the best fixed rule on the held-back
problems with Wilson intervals over problems.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ponder.evals.estimators import (
    COVERAGE,
    EstimatorSpec,
    candidates_of,
    default_estimators,
    estimate,
)
from ponder.evals.metrics import k_grid, wilson_interval
from ponder.evals.store import PoolRecord
from ponder.strategies.recipes import Recipe, Stage, replay

AGREEMENT = (0.5, 0.6, 0.75, 0.8, 1.0)
MARGIN = (0.0, 0.125, 0.25, 0.375, 0.5, 0.75)
SCHEDULES = (
    (1, 2),
    (1, 4),
    (2, 4),
    (2, 8),
    (2, 16),
    (4, 16),
    (1, 4, 16),
    (2, 4, 8),
    (2, 6, 16),
    (2, 8, 16),
    (4, 8, 16),
)
"""Cumulative sample counts per stage that the grid tries (those within the pool size)."""


@dataclass(frozen=True)
class Point:
    """One strategy on the accuracy-vs-tokens plane over a set of problems.

    ``accuracy``: mean over problems of the expected correctness; ``wilson``: its 95%
    interval over problems; ``tokens``: generated tokens per problem; ``per_problem``:
    problem id -> expected correctness; ``stages``: for a recipe, the share of problems
    stopping at each stage."""

    label: str
    kind: str
    accuracy: float
    tokens: float
    problems: int
    wilson: tuple[float, float]
    scorer_calls: float = 0.0
    recipe: Recipe | None = None
    stages: tuple[float, ...] = ()
    per_problem: dict[str, float] = field(default_factory=dict, compare=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        out = {
            "label": self.label,
            "kind": self.kind,
            "accuracy": round(self.accuracy, 4),
            "wilson": [round(x, 4) for x in self.wilson],
            "tokens_per_problem": round(self.tokens, 1),
            "scorer_calls_per_problem": round(self.scorer_calls, 2),
            "problems": self.problems,
        }
        if self.stages:
            out["stopped_at_stage"] = [round(float(x), 4) for x in self.stages]
        return out


def by_problem(pools: Iterable[PoolRecord]) -> dict[str, list[PoolRecord]]:
    out: dict[str, list[PoolRecord]] = defaultdict(list)
    for p in pools:
        out[p.problem_id].append(p)
    return dict(out)


def simulate(recipe: Recipe, pools: Sequence[PoolRecord], label: str = "auto") -> Point:
    """``recipe`` replayed on every pool: per problem the mean over its pools (seeds) of
    the picked sample's verdict, of the tokens of the samples drawn and of the scorer
    calls (one per drawn sample when the recipe scores)."""
    if not pools:
        raise ValueError("no pools to simulate the recipe on")
    if recipe.needs_scorer and recipe.scorer is None:
        raise ValueError("the recipe scores samples; name the pool scorer in its 'scorer' field")
    small = min(p.n for p in pools)
    if recipe.total_draws > small:
        raise ValueError(f"the recipe draws {recipe.total_draws} samples; the pools hold {small}")
    acc: dict[str, float] = {}
    tokens, calls = [], []
    stops = np.zeros(len(recipe.stages))
    for pid, group in by_problem(pools).items():
        hits, toks, scored = [], [], []
        for pool in group:
            samples = pool.samples
            scores = None
            if recipe.needs_scorer:
                name = recipe.scorer
                if any(name not in s.scores for s in samples):
                    raise ValueError(f"the pools have no scores from scorer {name!r}")
                scores = [s.scores[str(name)] for s in samples]
            out = replay(recipe, candidates_of(samples), scores)
            i = out.selection.index
            hits.append(0.0 if i is None else float(samples[i].correct))
            toks.append(sum(s.tokens for s in samples[: out.drawn]))
            scored.append(out.drawn if recipe.needs_scorer else 0)
            stops[out.stage] += 1 / len(group)
        acc[pid] = float(np.mean(hits))
        tokens.append(float(np.mean(toks)))
        calls.append(float(np.mean(scored)))
    shares = tuple(float(x) for x in stops / len(acc))
    return _point(label, "recipe", acc, tokens, calls, recipe, shares)


def _point(
    label: str,
    kind: str,
    acc: dict[str, float],
    tokens: Sequence[float],
    calls: Sequence[float],
    recipe: Recipe | None = None,
    stages: tuple[float, ...] = (),
) -> Point:
    count = len(acc)
    mean = float(np.mean(list(acc.values())))
    return Point(
        label,
        kind,
        mean,
        float(np.mean(tokens)),
        count,
        wilson_interval(mean * count, count),
        float(np.mean(calls)),
        recipe,
        stages,
        acc,
    )


def fixed_points(
    pools: Sequence[PoolRecord],
    specs: Sequence[EstimatorSpec] | None = None,
    ks: Sequence[int] | None = None,
    subsets: int = 200,
) -> list[Point]:
    """Every pool rule at every ``k``. Default rules: ``default_estimators`` but coverage
    (an oracle) and rpc (its Weibull-mixture fit per subset makes it the slowest to
    estimate; give it in ``specs`` to include it), those the pools carry evidence for."""
    if not pools:
        return []
    scorers = sorted({name for p in pools for s in p.samples for name in s.scores})
    if specs is None:
        specs = [s for s in default_estimators(scorers) if s.strategy != "rpc"]
    specs = [s for s in specs if _usable(s, pools)]
    ks = ks or k_grid(min(p.n for p in pools))
    return [
        Point(
            f"{e.label}@{e.k}",
            "fixed",
            e.accuracy,
            e.tokens_per_problem,
            e.problems,
            e.wilson,
            e.scorer_calls_per_problem,
            per_problem=e.per_problem,
        )
        for e in estimate(pools, specs, ks, subsets=subsets)
    ]


def _usable(spec: EstimatorSpec, pools: Sequence[PoolRecord]) -> bool:
    """Whether the pools carry what ``spec`` reads (coverage, an oracle, never is)."""
    stats = [s.stats for p in pools for s in p.samples]
    if spec.strategy == COVERAGE:
        return False
    if spec.strategy == "confidence-vote":
        return all("confidence" in st for st in stats)
    if spec.strategy == "weighted-vote" and spec.scorer is None:
        return all("log_weight_mean" in st for st in stats)
    return True


def recipe_grid(n: int, scorers: Sequence[str] = ()) -> list[Recipe]:
    """The recipes ``tune`` tries with pools of ``n`` samples: each schedule of
    ``SCHEDULES`` within ``n``; stage 0 stops on ``agreement >= a`` (``AGREEMENT``), middle
    stages on ``margin >= m`` (``MARGIN``); final rule majority, or best-of-n / weighted
    best-of-n with each pool scorer."""
    finals: list[tuple[str, str | None]] = [("majority", None)]
    finals += [(f, s) for s in scorers for f in ("best-of-n", "weighted-best-of-n")]
    out = []
    for schedule in SCHEDULES:
        if schedule[-1] > n:
            continue
        draws = [b - a for a, b in itertools.pairwise((0, *schedule))]
        middle = [MARGIN] * (len(draws) - 2)
        for a, *ms in itertools.product(_agreements(draws[0]), *middle):
            for final, scorer in finals:
                stages = [Stage(draws[0], {"agreement": a})]
                stages += [Stage(d, {"margin": m}) for d, m in zip(draws[1:-1], ms, strict=True)]
                stages.append(Stage(draws[-1]))
                out.append(Recipe(tuple(stages), final, scorer))
    return out


def _agreements(k: int) -> list[float]:
    """The agreement thresholds that differ on ``k`` samples (shares c/k)."""
    kept: dict[float, float] = {}
    for a in AGREEMENT:
        kept.setdefault(math.ceil(a * k - 1e-9) / k, a)
    return sorted(kept.values())


def frontier(points: Sequence[Point]) -> list[Point]:
    """The Pareto frontier: the points no other point beats on accuracy at no more tokens,
    cheapest first."""
    out: list[Point] = []
    for p in sorted(points, key=lambda p: (p.tokens, -p.accuracy)):
        if not out or p.accuracy > out[-1].accuracy + 1e-12:
            out.append(p)
    return out


def best_fixed(points: Sequence[Point]) -> Point:
    """The most accurate fixed rule (ties: fewer tokens)."""
    fixed = [p for p in points if p.kind == "fixed"]
    if not fixed:
        raise ValueError("no fixed strategy to compare with")
    return min(fixed, key=lambda p: (-p.accuracy, p.tokens))


def choose(
    recipes: Sequence[Point], target: float | None = None, max_tokens: float | None = None
) -> Point:
    """With ``max_tokens``: the most accurate recipe within it (ties: fewer tokens).
    Otherwise the cheapest recipe reaching accuracy ``target`` (when none does, the most
    accurate one)."""
    if not recipes:
        raise ValueError("no recipes to choose from")
    if max_tokens is not None:
        within = [p for p in recipes if p.tokens <= max_tokens]
        if not within:
            cheapest = min(p.tokens for p in recipes)
            raise ValueError(
                f"no recipe fits {max_tokens:g} tokens per problem; the cheapest uses "
                f"{cheapest:.0f}: raise --max-tokens-per-problem"
            )
        return min(within, key=lambda p: (-p.accuracy, p.tokens))
    if target is not None:
        reaching = [p for p in recipes if p.accuracy >= target - 1e-9]
        if reaching:
            return min(reaching, key=lambda p: (p.tokens, -p.accuracy))
    return min(recipes, key=lambda p: (-p.accuracy, p.tokens))


def split(
    problem_ids: Iterable[str], dev_fraction: float = 0.5, seed: int = 0
) -> tuple[list[str], list[str]]:
    """(development ids, held-back ids): the sorted ids in a ``seed``-ed random order, the
    first ``round(dev_fraction * count)`` (at least one) for development."""
    if not 0 < dev_fraction < 1:
        raise ValueError(f"dev fraction must be in (0, 1), got {dev_fraction}")
    ids = sorted(set(problem_ids))
    if len(ids) < 2:
        raise ValueError(f"need at least 2 problems to split, got {len(ids)}")
    order = np.random.default_rng(seed).permutation(len(ids))
    cut = min(max(1, round(dev_fraction * len(ids))), len(ids) - 1)
    dev = sorted(ids[i] for i in order[:cut])
    held = sorted(ids[i] for i in order[cut:])
    return dev, held


@dataclass(frozen=True)
class Tuning:
    """What ``tune`` found: every point on the development problems, the frontier, the
    fitted recipe and the best fixed rule there, and both on the held-back problems."""

    dev_ids: tuple[str, ...]
    held_ids: tuple[str, ...]
    dev_points: tuple[Point, ...]
    frontier: tuple[Point, ...]
    chosen: Point
    best_fixed: Point
    held_recipe: Point | None
    held_fixed: Point | None
    objective: str

    @property
    def recipe(self) -> Recipe:
        assert self.chosen.recipe is not None
        return self.chosen.recipe


def tune(
    pools: Sequence[PoolRecord],
    dev_ids: Sequence[str],
    held_ids: Sequence[str],
    max_tokens_per_problem: float | None = None,
    recipes: Sequence[Recipe] | None = None,
    subsets: int = 200,
    rules: Sequence[EstimatorSpec] | None = None,
) -> Tuning:
    """Fit a recipe on the ``dev_ids`` pools and measure it on the ``held_ids`` pools;
    ``rules``: the fixed pool rules to compare with (``fixed_points``' default)."""
    dev = [p for p in pools if p.problem_id in set(dev_ids)]
    held = [p for p in pools if p.problem_id in set(held_ids)]
    if not dev:
        raise ValueError("no pools for the development problems")
    scorers = sorted({name for p in dev for s in p.samples for name in s.scores})
    n = min(p.n for p in pools)
    grid = list(recipes) if recipes is not None else recipe_grid(n, scorers)
    fixed = fixed_points(dev, rules, subsets=subsets)
    sims = [simulate(r, dev, f"auto[{r.describe()}]") for r in grid]
    top = best_fixed(fixed)
    if max_tokens_per_problem is not None:
        chosen = choose(sims, max_tokens=max_tokens_per_problem)
        top = best_fixed([p for p in fixed if p.tokens <= max_tokens_per_problem] or fixed)
        objective = f"most accurate within {max_tokens_per_problem:g} tokens per problem"
    else:
        chosen = choose(sims, target=top.accuracy)
        objective = f"fewest tokens at the best fixed rule's accuracy ({top.label})"
    held_recipe = held_fixed = None
    if held:
        assert chosen.recipe is not None
        held_recipe = simulate(chosen.recipe, held, "auto (fitted)")
        label = top.label.rsplit("@", 1)
        spec = [e for e in (rules or _specs(held)) if e.label == label[0]]
        held_fixed = fixed_points(held, spec, [int(label[1])], subsets)[0]
    return Tuning(
        tuple(sorted(set(dev_ids))),
        tuple(sorted(set(held_ids))),
        tuple(fixed + sims),
        tuple(frontier(fixed + sims)),
        chosen,
        top,
        held_recipe,
        held_fixed,
        objective,
    )


def _specs(pools: Sequence[PoolRecord]) -> list[EstimatorSpec]:
    scorers = sorted({name for p in pools for s in p.samples for name in s.scores})
    return default_estimators(scorers)


def assess(
    recipe: Recipe,
    pools: Sequence[PoolRecord],
    rules: Sequence[EstimatorSpec] | None = None,
    subsets: int = 200,
) -> Tuning:
    """A given recipe (fitted elsewhere, e.g. on another task) against every fixed rule on
    all the pools' problems, which count as held back. The best fixed rule is picked on
    these same problems, so the comparison favours it."""
    if not pools:
        raise ValueError("no pools to assess the recipe on")
    ids = tuple(sorted({p.problem_id for p in pools}))
    fixed = fixed_points(pools, rules, subsets=subsets)
    point = simulate(recipe, pools, "auto (given recipe)")
    top = best_fixed(fixed)
    return Tuning(
        (),
        ids,
        tuple([*fixed, point]),
        tuple(frontier([*fixed, point])),
        point,
        top,
        point,
        top,
        "none: the recipe was given, not fitted here",
    )
