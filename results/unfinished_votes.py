"""Self-consistency with and without the votes of samples cut off by the token cap
(``self-consistency[unfinished=drop]`` against ``self-consistency``), estimated from every
committed pool group of at least 50 problems at k = 4, 8, 16 (the same 200 subsets a
problem for both rules): each rule's accuracy and the paired difference, with a 95% normal
interval over problems; then the same on the arithmetic problems drawn after the rule was
found (stop 42: problems 51-60 of each level, ids ``.../50`` to ``.../59``), which it never
saw. Read by results/INTRO.md. No model needed:

    python results/unfinished_votes.py > results/unfinished_votes.txt
"""

import math
from pathlib import Path

import numpy as np

from ponder.evals.estimators import estimate, parse_estimators
from ponder.evals.export import load_results
from ponder.evals.results import groups

store = load_results(sorted(Path(__file__).parent.glob("*.jsonl.gz")))
specs = parse_estimators(["self-consistency", "self-consistency[unfinished=drop]"], [])


def compare(title, pools):
    at = {(e.label, e.k): e for e in estimate(pools, specs, ks=[4, 8, 16], subsets=200)}
    for k in (4, 8, 16):
        vote, drop = (at[(s.label, k)] for s in specs)
        d = np.array([drop.per_problem[p] - vote.per_problem[p] for p in vote.per_problem])
        half = 1.96 * d.std(ddof=1) / math.sqrt(len(d))
        print(
            f"{title}, k = {k}: {100 * vote.accuracy:.1f}% -> {100 * drop.accuracy:.1f}%, "
            f"{100 * d.mean():+.1f} ± {100 * half:.1f} points on {len(d)} problems"
        )


unseen = []
for group in groups(store):
    for pools in group.pools.values():
        if len({p.problem_id for p in pools}) < 50:
            continue
        compare(group.title, pools)
        if group.title.startswith("arithmetic"):
            unseen += [p for p in pools if 50 <= int(p.problem_id.rsplit("/", 1)[1]) < 60]
if unseen:
    compare("arithmetic, problems 51-60 of each level (unseen)", unseen)
