"""Scoring: answer checking, sandboxed execution, the model as judge, reward models.

Importing the package registers every scorer module in it by name.
"""

import importlib
import pkgutil

from ponder.scoring.base import (
    CallableScorer,
    OutcomeScorer,
    ProcessScorer,
    Scorer,
    ScorerError,
    Scores,
    create_scorer,
    describe_scorers,
    register_scorer,
    require_outcome,
    require_process,
    scorer,
    scorer_names,
)

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name not in {"base"} and not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = [
    "CallableScorer",
    "OutcomeScorer",
    "ProcessScorer",
    "Scorer",
    "ScorerError",
    "Scores",
    "create_scorer",
    "describe_scorers",
    "register_scorer",
    "require_outcome",
    "require_process",
    "scorer",
    "scorer_names",
]
