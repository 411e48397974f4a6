"""Why particle-filter with 8 particles answers less than with 4 (results/INTRO.md): over
the search cells of the committed arithmetic data, per strategy and budget, the cells right
(the strategy's own pick), the cells a vote over their finished particles would get right
(the most common answer; ties: the first seen), the chosen particles under 25 words, the
cells with any right finished particle, and the share of finished particles that are right;
then the finished particles split by how they ended (``stop``: the model ended the
solution; ``length``: it ran into the 256-token cap, unfinished), the picks split the same
way, the judge's final score of the particles that ended as a verifier of them (AUROC,
``ponder.scoring.quality.auroc``: the chance that a right one outscores a wrong one), and
for comparison the pool's samples (drawn at the same cap) split the same way.

    ponder results import arith.sqlite results/arithmetic.jsonl.gz
    python results/particle_budgets.py arith.sqlite > results/particle_budgets.txt
"""

import json
import sqlite3
import sys
from collections import Counter

from ponder.scoring.quality import auroc

db = sqlite3.connect(sys.argv[1])
for like in ("particle-filter%", "beam-search%"):
    for budget in (4, 8):
        rows = db.execute(
            "select correct, candidate_answers, candidates_correct, result from cells "
            "where strategy like ? and budget = ?",
            (like, budget),
        ).fetchall()
        picked = voted = short = covered = finished = right = 0
        for correct, answers, corrects, result in rows:
            answers, corrects = json.loads(answers), json.loads(corrects)
            picked += correct
            counts = Counter(a for a in answers if a is not None)
            if counts:
                voted += corrects[answers.index(counts.most_common(1)[0][0])]
            best = json.loads(result).get("best") or {}
            short += len((best.get("text") or "").split()) < 25
            covered += any(corrects)
            finished += len(corrects)
            right += sum(corrects)
        print(
            f"{like[:-1]} budget {budget}: {len(rows)} cells; picked right {picked}, "
            f"vote over finished particles {voted}, chosen under 25 words {short}, "
            f"any finished particle right {covered}; finished particles right "
            f"{right}/{finished} = {right / max(finished, 1):.1%}"
        )
        ends = Counter()  # (finish reason, right) over finished particles, then over picks
        scores, oks = [], []  # the judge's score of each particle that ended, and its verdict
        for correct, _, corrects, result in rows:
            result = json.loads(result)
            for candidate, ok in zip(result["candidates"], json.loads(corrects), strict=True):
                ends[("particle", candidate.get("finish_reason"), ok)] += 1
                if candidate.get("finish_reason") == "stop" and candidate.get("score") is not None:
                    scores.append(candidate["score"])
                    oks.append(bool(ok))
            ends[("pick", (result.get("best") or {}).get("finish_reason"), correct)] += 1
        for what in ("particle", "pick"):
            parts = []
            for reason in ("stop", "length"):
                n = ends[(what, reason, 0)] + ends[(what, reason, 1)]
                parts.append(f"{reason} {n} ({ends[(what, reason, 1)]} right)")
            print(f"    {what}s by how they ended: {', '.join(parts)}")
        area = auroc(scores, oks)
        print(
            f"    the judge's score of the {len(scores)} that ended: AUROC "
            + ("n/a" if area is None else f"{area:.2f}")
        )
rows = db.execute(
    "select s.finish_reason, count(*), sum(s.correct) from samples s join runs r "
    "using (run_id) where r.task = 'arithmetic' group by s.finish_reason"
).fetchall()
print("pool samples by how they ended: " + ", ".join(f"{r} {n} ({c} right)" for r, n, c in rows))
