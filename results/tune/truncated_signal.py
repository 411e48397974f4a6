"""How the ``truncated`` signal sorts problems: the committed pools grouped by how many of
their first 2 (and 4) samples ran out of tokens, with self-consistency@16's accuracy and
its share of tokens in each group. Uses ponder's own majority vote (``select_majority``).

    python results/tune/truncated_signal.py arith.sqlite words.sqlite humaneval.sqlite

(databases from ``ponder results import``); output: results/tune/truncated_signal.txt.
"""

import sys
from collections import defaultdict

from ponder.evals import Store
from ponder.evals.estimators import candidates_of
from ponder.strategies.selection import select_majority


def vote16(samples):
    chosen = select_majority(candidates_of(samples[:16]))
    return 0.0 if chosen.index is None else float(samples[chosen.index].correct)


for db in sys.argv[1:]:
    with Store(db) as store:
        pools = [p for r in store.runs() for p in store.pools(r["run_id"]) if p.n >= 16]
    total = sum(s.tokens for p in pools for s in p.samples[:16])
    print(f"{db}: {len(pools)} pools of 16")
    for first in (2, 4):
        groups = defaultdict(list)
        for p in pools:
            groups[sum(s.finish_reason == "length" for s in p.samples[:first])].append(p)
        for cut in sorted(groups):
            g = groups[cut]
            acc = sum(vote16(p.samples) for p in g) / len(g)
            share = sum(s.tokens for p in g for s in p.samples[:16]) / total
            print(
                f"  {cut} of the first {first} cut off: {len(g):3d} problems, "
                f"self-consistency@16 {acc:6.1%}, {share:4.0%} of its tokens"
            )
