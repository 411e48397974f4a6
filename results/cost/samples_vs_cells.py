"""The figures of results/cost/INTRO.md on the cells' samples against the pool's, from the
committed data (no model): per budget whose cells are all done, how many of the cells'
samples are right against what the pool's per-problem rates expect (with the z-score as if
they were independent draws), how many (problem, sample) places the six strategies' cells
share one text, and the same count with each place counted once (the mean of the six
verdicts there); then the main arithmetic pool's right samples on the same 40 problems
(not the same samples: results/cost/two_pools.py).

    ponder results import cost.sqlite results/cost/arithmetic-l2.jsonl.gz
    ponder results import arith.sqlite results/arithmetic.jsonl.gz
    python results/cost/samples_vs_cells.py cost.sqlite arith.sqlite
"""

import json
import math
import sqlite3
import sys
from collections import defaultdict

cost, main = (sqlite3.connect(path) for path in sys.argv[1:3])
rates = defaultdict(list)
for problem, correct in cost.execute("select problem_id, correct from samples"):
    rates[problem].append(correct)
rate = {problem: sum(v) / len(v) for problem, v in rates.items()}
# every budget whose cells are all done (6 strategies x 40 problems)
budgets = [
    b for (b,) in cost.execute("select budget from cells group by budget having count(*) = 240")
]
for budget in budgets:
    right = expected = variance = 0.0
    texts = defaultdict(set)
    places = defaultdict(list)
    rows = cost.execute(
        "select problem_id, candidates_correct, result from cells where budget = ?", (budget,)
    )
    for problem, corrects, result in rows:
        candidates = json.loads(result)["candidates"]
        for i, (ok, candidate) in enumerate(zip(json.loads(corrects), candidates, strict=True)):
            p = rate[problem]
            right, expected, variance = right + ok, expected + p, variance + p * (1 - p)
            texts[(problem, i)].add(candidate["text"])
            places[(problem, i)].append(ok)
    one = sum(len(t) == 1 for t in texts.values())
    # Each (problem, sample) place counted once, as the mean of the strategies' verdicts
    # there: the six strategies draw one stream per place, so their copies are not
    # independent draws (a bound on the other side of "if independent").
    once = sum(sum(v) / len(v) for v in places.values())
    once_expected = sum(rate[problem] for problem, _ in places)
    once_variance = sum(rate[problem] * (1 - rate[problem]) for problem, _ in places)
    print(
        f"budget {budget}: cells' samples right {right:.0f}, the pool's rates expect "
        f"{expected:.1f} (z = {(right - expected) / math.sqrt(variance):.1f} if independent); "
        f"{one} of {len(texts)} (problem, sample) places hold one text across the strategies; "
        f"each place once: {once:.1f} right, {once_expected:.1f} expected "
        f"(z = {(once - once_expected) / math.sqrt(once_variance):.1f})"
    )
marks = ",".join("?" * len(rate))
n, ok = main.execute(
    f"select count(*), sum(correct) from samples where problem_id in ({marks})", list(rate)
).fetchone()
print(f"main arithmetic pool on the same {len(rate)} problems: {ok} of {n} samples right")
