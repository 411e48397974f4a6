"""Did every problem draw the same random numbers? Until stop 43 the engines seeded
sample ``i`` of a request by ``(seed, i)`` alone, and every problem of an evaluation is
seeded 0, so sample ``i`` of every problem made its choices from one stream. If that
mattered, sample ``i`` behaves alike across problems. For every committed pool group of at
least 50 problems, per sample index: how often it is right, how often it runs into the
token cap, and its most common opening (first two words); then a permutation test: the
spread of the per-index counts (the variance over indices) against the same with each
problem's samples shuffled among the indices (2,000 shuffles, seed 0). Without shared
streams the indices of one problem are exchangeable, and the observed spread is typical of
the shuffles. The excess spread, as a standard deviation in points, is how far one
index's rate (what a one-seed cell of one sample measures) moves beyond what independent
problems give. Read by docs/EVALS.md ("Seeds"). No model needed:

    python results/seed_streams.py > results/seed_streams.txt
"""

from collections import Counter
from pathlib import Path

import numpy as np

from ponder.evals.export import load_results
from ponder.evals.results import groups

store = load_results(sorted(Path(__file__).parent.glob("*.jsonl.gz")))
rng = np.random.default_rng(0)


def spread(x: np.ndarray) -> float:
    return float(x.sum(axis=0).var())


for group in groups(store):
    for pools in group.pools.values():
        pools = [p for p in pools if p.seed == 0]
        if len(pools) < 50:
            continue
        n = min(len(p.samples) for p in pools)
        right = np.array([[s.correct for s in p.samples[:n]] for p in pools], dtype=float)
        cut = np.array([[s.finish_reason == "length" for s in p.samples[:n]] for p in pools])
        cut = cut.astype(float)
        print(f"{group.title}: {len(pools)} problems, the first {n} samples of each")
        for i in range(n):
            opening = Counter(" ".join(p.samples[i].text.split()[:2]) for p in pools)
            top, count = opening.most_common(1)[0]
            print(
                f"  sample {i:2d}: right {100 * right[:, i].mean():5.1f}%, cut off "
                f"{100 * cut[:, i].mean():5.1f}%, opens {top!r} on {count}"
            )
        for name, x in (("right", right), ("cut off", cut)):
            seen = spread(x)
            null = np.array([spread(rng.permuted(x, axis=1)) for _ in range(2000)])
            p = (1 + (null >= seen).sum()) / (1 + len(null))
            extra = 100 * max(seen - null.mean(), 0.0) ** 0.5 / len(pools)
            print(
                f"  {name}: spread over the indices {seen:.1f} against {null.mean():.1f} "
                f"for shuffles (95th percentile {np.quantile(null, 0.95):.1f}); p = {p:.4f}; "
                f"one index's rate moves {extra:.1f} points (s.d.) beyond the shuffles'"
            )
