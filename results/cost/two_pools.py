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

import gzip
import json
import sys

from ponder.evals.estimators import candidates_of
from ponder.evals.store import SampleRecord
from ponder.strategies.selection import ballots, select_majority


def level2_pools(path):
    out = {}
    with gzip.open(path, "rt") as f:
        for line in f:
            row = json.loads(line)
            if row["kind"] == "pool" and "/L2/" in row["problem_id"]:
                out[row["problem_id"]] = [SampleRecord(**s) for s in row["samples"]]
    return out


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
