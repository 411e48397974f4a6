"""How long ``ponder tune`` on 100 arithmetic problems with a pool of 16 would take on this
machine, from the committed pools' own timings (issue 21 asks for under an hour).

A tune from scratch draws one pool per problem, asks the model's P(yes) about the first
samples, then fits. The pools are the part that scales with the problems. This reads the
wall time of the 50 pools drawn at stop 42 (problems 51-60 of each level, one at a time)
from ``results/arithmetic.jsonl.gz`` and scales it to 100 problems. Work beside them, if
any, would make the estimate high; their 75 tok/s is the engine's rate at 16 sequences on a
quiet machine here (docs/BENCHMARKS.md), so it was at most small.
It does not run a model: it is an estimate from measured parts, not an end-to-end timing.

    python results/tune/tune_time.py results/arithmetic.jsonl.gz

Output: results/tune/tune_time.txt.
"""

import statistics
import sys

from ponder.evals.export import read_results
from ponder.evals.metrics import busy_seconds

rows = read_results(sys.argv[1])
pools = [r for r in rows if r["kind"] == "pool" and int(r["problem_id"].rsplit("/", 1)[1]) >= 50]
seconds = [p["seconds"] for p in pools]
tokens = [p["usage"]["tokens_generated"] for p in pools]
wall = busy_seconds([(p["finished"] - p["seconds"], p["finished"]) for p in pools])
per_pool = wall / len(pools)
print(f"{len(pools)} pools of 16 (problems 51-60 of levels 1-5), drawn one at a time:")
median = statistics.median(seconds)
print(f"  wall time {wall:,.0f} s, {per_pool:.1f} s a pool (median {median:.1f})")
print(f"  {sum(tokens) / len(pools):,.0f} generated tokens a pool, {sum(tokens) / wall:.1f} tok/s")
print(f"100 pools at that rate: {100 * per_pool / 60:.0f} min, before any P(yes) ask or fit")
