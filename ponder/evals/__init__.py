"""Evaluation: run (problem × strategy × budget × seed) cells into SQLite, compute metrics
with honest intervals, fit scaling curves, and report them as tables, JSON and HTML."""

from ponder.evals.runner import (
    EvalSummary,
    StrategySpec,
    parse_strategies,
    run_eval,
    run_eval_async,
)
from ponder.evals.store import Store

__all__ = [
    "EvalSummary",
    "Store",
    "StrategySpec",
    "parse_strategies",
    "run_eval",
    "run_eval_async",
]
