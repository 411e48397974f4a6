"""``ponder tune`` with samples cut off by the token cap left out of every vote: the
recipes' votes and signals (``policy.select_majority`` over ``selection.ballots(...,
"drop")``) and, among the fixed rules, ``self-consistency[unfinished=drop]``. An
experiment (stop 42), not a ponder feature: recipes have no such setting. Run on a copy of
a database holding the committed arithmetic pools (``ponder results import``):

    python results/tune/unfinished_drop.py drop tune arithmetic --level 1 --limit 50 \\
        --pool 16 --max-tokens 256 --flash-attn on --db COPY.sqlite \\
        --pools-from ac92f80203a53bc0 --pools-from 14a6c7fa1d0f800e \\
        --pools-from 1b19327fd0c770e8 --pools-from a436fc132ea5ae8c --out /tmp/tune-drop

``vote`` in place of ``drop`` runs plain ``ponder tune``. Output of the ``drop`` run:
results/tune/unfinished_drop.txt (its report.txt).
"""

import sys

import ponder.evals.tune as tune
import ponder.strategies.recipes.policy as policy
from ponder.cli import main
from ponder.evals.estimators import default_estimators, parse_estimators
from ponder.strategies.selection import ballots, select_majority

if sys.argv[1] == "drop":
    policy.select_majority = lambda c: select_majority(ballots(c, "drop"))  # type: ignore

    def with_drop(scorers):
        extra = parse_estimators(["self-consistency[unfinished=drop]"], [])
        return default_estimators(scorers) + extra

    tune.default_estimators = with_drop  # type: ignore
sys.exit(main(sys.argv[2:]))
