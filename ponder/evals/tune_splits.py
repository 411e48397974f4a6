"""How stable a fit is: the same fits at several random splits of the problems.

Every candidate (each fixed rule at each ``k`` and temperature, each recipe of the grid) is
measured once on all the problems. A split's development and held-back figures are then the
means of the per-problem figures over its problems: what ``tune`` measures on that split
(up to the random subsets behind a fixed rule's estimate below ``k = n``), at no further
simulation. Each fit chooses on the development part exactly as ``tune`` does
(``fit_recipe``), and the chosen recipe and the best fixed rule are read on the held-back
part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ponder.evals.estimators import EstimatorSpec
from ponder.evals.metrics import wilson_interval
from ponder.evals.store import PoolRecord
from ponder.evals.tune import (
    Bootstrap,
    Point,
    Pools,
    by_temperature,
    candidates,
    fit_recipe,
    split,
)
from ponder.strategies.recipes import Recipe


@dataclass(frozen=True)
class SplitFit:
    """One fit at one split (``seed``): the recipe it chose and the best fixed rule, with
    their development and held-back accuracy and tokens per problem, and the recipe's 95%
    Wilson interval on the held-back problems."""

    seed: int
    fit: str
    recipe: str
    best_fixed: str
    dev_accuracy: float
    dev_tokens: float
    held_accuracy: float
    held_tokens: float
    held_wilson: tuple[float, float]
    fixed_accuracy: float
    fixed_tokens: float

    def as_dict(self) -> dict[str, Any]:
        out = {k: round(v, 4) if isinstance(v, float) else v for k, v in vars(self).items()}
        out["held_wilson"] = [round(x, 4) for x in self.held_wilson]
        return out


def restrict(point: Point, ids: Sequence[str]) -> Point:
    """``point`` on the problems ``ids`` only: its mean correctness, Wilson interval and
    tokens over them (from ``per_problem`` and ``tokens_by_problem``)."""
    missing = [i for i in ids if i not in point.per_problem or i not in point.tokens_by_problem]
    if missing:
        raise ValueError(f"{point.label} was not measured on problem {missing[0]}")
    acc = {i: point.per_problem[i] for i in ids}
    mean = float(np.mean(list(acc.values())))
    return replace(
        point,
        accuracy=mean,
        tokens=float(np.mean([point.tokens_by_problem[i] for i in ids])),
        problems=len(ids),
        wilson=wilson_interval(mean * len(ids), len(ids)),
        per_problem=acc,
        tokens_by_problem={i: point.tokens_by_problem[i] for i in ids},
    )


def split_fits(
    pools: Sequence[PoolRecord] | Pools,
    seeds: Sequence[int],
    fits: Mapping[str, Bootstrap | None],
    dev_fraction: float = 0.5,
    max_tokens_per_problem: float | None = None,
    recipes: Sequence[Recipe] | None = None,
    subsets: int = 200,
    rules: Sequence[EstimatorSpec] | None = None,
    confidence: bool = True,
) -> list[SplitFit]:
    """Each fit of ``fits`` (name -> margin, None: the plain fit) at the split of each seed
    of ``seeds`` (``split(ids, dev_fraction, seed)``), seed by seed; ``confidence``: as in
    ``tune``."""
    grouped = by_temperature(pools)
    every = [p for ps in grouped.values() for p in ps]
    if not every:
        raise ValueError("no pools to split")
    n = min(p.n for p in every)
    fixed, sims, _ = candidates(grouped, n, recipes, subsets, rules, confidence)
    out = []
    for seed in seeds:
        dev, held = split([p.problem_id for p in every], dev_fraction, seed)
        dev_fixed = [restrict(p, dev) for p in fixed]
        dev_sims = [restrict(p, dev) for p in sims]
        for name, fit in fits.items():
            chosen, top, _ = fit_recipe(dev_sims, dev_fixed, max_tokens_per_problem, fit)
            recipe = restrict(next(p for p in sims if p.label == chosen.label), held)
            rule = restrict(next(p for p in fixed if p.label == top.label), held)
            out.append(
                SplitFit(
                    seed,
                    name,
                    chosen.label,
                    top.label,
                    chosen.accuracy,
                    chosen.tokens,
                    recipe.accuracy,
                    recipe.tokens,
                    recipe.wilson,
                    rule.accuracy,
                    rule.tokens,
                )
            )
    return out


def spread(results: Sequence[SplitFit]) -> dict[str, dict[str, float]]:
    """Per fit, over the splits: the held-back accuracy (mean, min, max), its difference
    from the best fixed rule's (mean, min, max), the tokens as a share of the best fixed
    rule's (mean), and, against the first fit named, on how many splits it was more and
    less accurate on the held-back part."""
    names = list(dict.fromkeys(r.fit for r in results))
    base = {r.seed: r.held_accuracy for r in results if r.fit == names[0]} if names else {}
    out = {}
    for name in names:
        rows = [r for r in results if r.fit == name]
        acc = np.array([r.held_accuracy for r in rows])
        gap = acc - np.array([r.fixed_accuracy for r in rows])
        diff = acc - np.array([base[r.seed] for r in rows])
        out[name] = {
            "splits": len(rows),
            "held_accuracy": float(acc.mean()),
            "held_min": float(acc.min()),
            "held_max": float(acc.max()),
            "gap": float(gap.mean()),
            "gap_min": float(gap.min()),
            "gap_max": float(gap.max()),
            "token_share": float(np.mean([r.held_tokens / r.fixed_tokens for r in rows])),
            "better": int(np.sum(diff > 1e-9)),
            "worse": int(np.sum(diff < -1e-9)),
        }
    return out
