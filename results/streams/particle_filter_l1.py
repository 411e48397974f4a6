"""Particle-filter at 4 and 8 particles on the first 20 level-1 arithmetic problems, drawn
twice: at stops 40-41 with the random streams shared across problems (in
results/arithmetic.jsonl.gz) and at stop 43 with each prompt's own (here, in
particle-filter-l1.jsonl.gz; docs/EVALS.md, "Seeds"). Same command, settings and code of
the strategy. Per budget: right answers, mean tokens a problem, and which problems were
right (problem 0 first). No model:

    python results/streams/particle_filter_l1.py > results/streams/particle_filter_l1.txt
"""

from pathlib import Path

from ponder.evals.export import load_results

here = Path(__file__).parent
for title, path in (
    ("shared streams (stops 40-41)", here.parent / "arithmetic.jsonl.gz"),
    ("each prompt's own streams (stop 43)", here / "particle-filter-l1.jsonl.gz"),
):
    store = load_results([path])
    cells = [
        c
        for run in store.runs()
        for c in store.cells(run["run_id"])
        if c.strategy.startswith("particle-filter") and c.problem_id.startswith("arithmetic/L1/")
    ]
    cells = [c for c in cells if int(c.problem_id.rsplit("/", 1)[1]) < 20]
    print(title)
    for budget in (4, 8):
        mine = sorted(
            (c for c in cells if c.budget == budget), key=lambda c: int(c.problem_id.split("/")[-1])
        )
        right = "".join(str(int(c.correct)) for c in mine)
        tokens = sum(c.tokens_generated for c in mine) / len(mine)
        print(
            f"  {budget} particles: {right.count('1')}/{len(mine)} right, "
            f"{tokens:.0f} tokens a problem; {right}"
        )
