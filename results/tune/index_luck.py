"""How much the shared random streams (docs/EVALS.md, "Seeds") move ``ponder tune``'s
figures. ``tune`` replays a recipe over each pool's samples in drawing order, so stage 0
reads samples 0, 1, ... of every problem, and until stop 43 sample ``i`` of every problem
was drawn from one stream. Here recipes are replayed over the committed arithmetic pools
(the first 50 problems of each level, as tune used them) in drawing order, and over 30
random orders of each pool's samples (seed 0), which no stream's luck can favour. The
recipes need no P(yes) (only the first 4 samples of each pool have one stored). No model:

    python results/tune/index_luck.py > results/tune/index_luck.txt
"""

import dataclasses
from pathlib import Path

import numpy as np

from ponder.evals.export import load_results
from ponder.evals.results import groups
from ponder.evals.tune import simulate
from ponder.strategies.recipes.format import from_dict

store = load_results([Path(__file__).parents[1] / "arithmetic.jsonl.gz"])
[group] = [g for g in groups(store) if g.title.startswith("arithmetic")]
[pools] = [p for p in group.pools.values() if len(p) >= 250]
pools = [p for p in pools if int(p.problem_id.rsplit("/", 1)[1]) < 50]
RECIPES = {
    "1 sample": [{"draw": 1}],
    "2 samples": [{"draw": 2}],
    "built-in (2, agree; 4, margin 0.5; 10)": [
        {"draw": 2, "stop_if": {"agreement": 1.0}},
        {"draw": 4, "stop_if": {"margin": 0.5}},
        {"draw": 10},
    ],
    "stop 42's drop fit (2, agree 0.6; 6, margin 0.25; 8)": [
        {"draw": 2, "stop_if": {"agreement": 0.6}},
        {"draw": 6, "stop_if": {"margin": 0.25}},
        {"draw": 8},
    ],
    "giving up (2, agree 0.6, give up truncated 0.5; 4; 10)": [
        {"draw": 2, "stop_if": {"agreement": 0.6}, "give_up_if": {"truncated": 0.5}},
        {"draw": 4, "stop_if": {"margin": 0.0}},
        {"draw": 10},
    ],
}
rng = np.random.default_rng(0)
orders = [
    [
        dataclasses.replace(p, samples=tuple(p.samples[i] for i in rng.permutation(p.n)))
        for p in pools
    ]
    for _ in range(30)
]
print(f"{len(pools)} arithmetic pools of 16; accuracy and tokens per problem")
for name, stages in RECIPES.items():
    recipe = from_dict({"format": "ponder-recipe/1", "stages": stages, "final": "majority"})
    drawn = simulate(recipe, pools)
    shuffled = [simulate(recipe, o) for o in orders]
    acc = np.array([s.accuracy for s in shuffled])
    tokens = np.mean([s.tokens for s in shuffled])
    print(
        f"  {name}: drawing order {100 * drawn.accuracy:.1f}% at {drawn.tokens:.0f}; "
        f"random orders {100 * acc.mean():.1f}% (s.d. {100 * acc.std():.1f}) at {tokens:.0f}"
    )
