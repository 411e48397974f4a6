"""The cost grid's pool against the main arithmetic pool on the same 40 level-2 problems.

Both pools drew 16 samples a problem at the same settings and seed, the main one a problem
at a time, the cost grid's 8 problems at a time. They share each sample's random stream,
but decoding many unrelated requests at once is not batch-invariant (docs/ENGINES.md,
"Measured limit of exact mode"), so the texts drift apart.
This counts the problems whose 16 texts are the same in both, the right samples in each,
and the majority vote over all 16 (plain, and with ``unfinished=drop``) in each, with
ponder's own selection functions.

    python results/cost/two_pools.py results/arithmetic.jsonl.gz results/cost/arithmetic-l2.jsonl.gz

Output: results/cost/two_pools.txt.
"""

import sys

from ponder.evals.estimators import candidates_of
from ponder.evals.export import load_results
from ponder.strategies.selection import ballots, select_majority


def level2_pools(path):
    """Problem id -> the samples of its pool, for the level-2 pools of an exported file."""
    with load_results([path]) as store:
        return {
            p.problem_id: p.samples
            for run in store.runs()
            for p in store.pools(run["run_id"])
            if "/L2/" in p.problem_id
        }


main, cost = level2_pools(sys.argv[1]), level2_pools(sys.argv[2])
common = sorted(set(main) & set(cost))
same = sum([s.text for s in main[p]] == [s.text for s in cost[p]] for p in common)
print(f"{len(common)} problems in both pools; the same 16 texts in both: {same}")
for name, pools in (("main pool", main), ("cost pool", cost)):
    right = sum(s.correct for p in common for s in pools[p])
    votes = []
    for rule in ("vote", "drop"):
        won = 0
        for p in common:
            chosen = select_majority(ballots(candidates_of(pools[p]), rule))
            won += chosen.index is not None and pools[p][chosen.index].correct
        votes.append(f"unfinished={rule} {won}/{len(common)}")
    print(f"{name}: {right} of {16 * len(common)} samples right; vote over 16: {', '.join(votes)}")
