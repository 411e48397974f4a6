"""ponder: better answers from language models by thinking more at inference time."""

from ponder.api import load_engine, solve, solve_async
from ponder.scoring import scorer
from ponder.types import Budget, Completion, Problem, Request, Result, SamplingParams, Usage

__version__ = "0.1.0"
__all__ = [
    "Budget",
    "Completion",
    "Problem",
    "Request",
    "Result",
    "SamplingParams",
    "Usage",
    "load_engine",
    "scorer",
    "solve",
    "solve_async",
]
