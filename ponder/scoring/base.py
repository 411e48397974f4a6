"""The scorer protocols, their registry, and ``ponder.scorer(fn)`` for any Python callable.

Two kinds of scorer, one method each, both batched:

* an **outcome scorer** rates whole candidate solutions: ``score(problem, texts)``;
* a **process scorer** rates partial solutions step by step:
  ``score_steps(problem, partials)``, where each partial is its list of steps so far and the
  value is the score of its *last* step (how the search aggregates step scores over a path is
  the strategy's business).

Scores are floats, higher is better; scorers that estimate a probability return one in
[0, 1]. Every call returns the ``Usage`` it spent so that strategies can account for it.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ponder.types import Problem, Usage

__all__ = [
    "CallableScorer",
    "OutcomeScorer",
    "ProcessScorer",
    "Scorer",
    "ScorerError",
    "Scores",
    "create_scorer",
    "register_scorer",
    "require_outcome",
    "require_process",
    "scorer",
    "scorer_names",
]


class ScorerError(RuntimeError):
    """A scorer could not score: the service it relies on failed, refused the request, or
    answered nonsense. Not an ``EngineError``: the engine that generated the candidates is
    fine, and an evaluation records the failure as the scorer's."""


@dataclass(frozen=True)
class Scores:
    """One score per item scored, and what scoring cost."""

    values: tuple[float, ...]
    usage: Usage = field(default_factory=Usage)

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(float(v) for v in self.values))


@runtime_checkable
class OutcomeScorer(Protocol):
    name: str

    async def score(self, problem: Problem, candidates: Sequence[str]) -> Scores: ...


@runtime_checkable
class ProcessScorer(Protocol):
    name: str

    async def score_steps(self, problem: Problem, partials: Sequence[Sequence[str]]) -> Scores: ...


Scorer = OutcomeScorer | ProcessScorer


def require_outcome(scorer: object, strategy: str) -> OutcomeScorer:
    """``scorer`` as an outcome scorer, or a ``ValueError`` saying what to pass."""
    if scorer is None:
        raise ValueError(
            f"strategy {strategy!r} needs a scorer to rank candidates; pass one "
            f"(e.g. --scorer judge, or scorer=ponder.scorer(fn)); known: {scorer_names()}"
        )
    if not isinstance(scorer, OutcomeScorer):
        raise ValueError(
            f"strategy {strategy!r} needs an outcome scorer (a score(problem, texts) method); "
            f"{getattr(scorer, 'name', type(scorer).__name__)!r} is not one"
        )
    return scorer


def require_process(scorer: object, strategy: str) -> ProcessScorer:
    """``scorer`` as a process (step) scorer, or a ``ValueError`` saying what to pass."""
    if scorer is None or not isinstance(scorer, ProcessScorer):
        have = "no scorer" if scorer is None else repr(getattr(scorer, "name", scorer))
        raise ValueError(
            f"strategy {strategy!r} searches over steps and needs a process scorer "
            f"(a score_steps(problem, partials) method), got {have}; e.g. --scorer judge, or "
            f"scorer=ponder.scorer(fn, process=True)"
        )
    return scorer


class CallableScorer:
    """Any Python function as a scorer.

    Outcome form: ``fn(problem, text) -> float``. Process form (``process=True``):
    ``fn(problem, steps) -> float`` where ``steps`` is the list of steps so far; the same
    object then also scores whole candidates as one step. ``fn`` may be ``async``.
    """

    def __init__(self, fn: Callable[..., Any], process: bool = False, name: str = "") -> None:
        if not callable(fn):
            raise ValueError(f"a scorer must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.process = process
        self.name = name or getattr(fn, "__name__", "callable")

    async def _call(self, problem: Problem, item: Any) -> float:
        value = self.fn(problem, item)
        if inspect.isawaitable(value):
            value = await value
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"scorer {self.name!r} returned {value!r}; a scorer must return a number"
            ) from None

    async def score(self, problem: Problem, candidates: Sequence[str]) -> Scores:
        items: list[Any] = [[c] for c in candidates] if self.process else list(candidates)
        values = await asyncio.gather(*(self._call(problem, x) for x in items))
        return Scores(tuple(values), Usage(scorer_calls=len(candidates)))

    async def score_steps(self, problem: Problem, partials: Sequence[Sequence[str]]) -> Scores:
        if self.process:
            items: list[Any] = [list(p) for p in partials]
        else:
            items = ["".join(p) for p in partials]
        values = await asyncio.gather(*(self._call(problem, x) for x in items))
        return Scores(tuple(values), Usage(scorer_calls=len(partials)))


def scorer(fn: Callable[..., Any], process: bool = False, name: str = "") -> CallableScorer:
    """Wrap ``fn(problem, text) -> float`` (or, with ``process=True``,
    ``fn(problem, steps) -> float``) as a scorer usable by every strategy."""
    return CallableScorer(fn, process=process, name=name)


def question_text(problem: Problem) -> str:
    """The question as the solver saw it: its user messages, joined by blank lines."""
    parts = [m["content"].strip() for m in problem.messages if m.get("role") == "user"]
    if not parts:
        raise ValueError(f"problem {problem.id!r} has no user message to score against")
    return "\n\n".join(parts)


# ---- registry: scorers by name, built against an engine ----------------------------------

ScorerFactory = Callable[..., Any]
_SCORERS: dict[str, tuple[ScorerFactory, str]] = {}


def register_scorer(name: str, summary: str) -> Callable[[ScorerFactory], ScorerFactory]:
    """Register ``factory(engine, **options) -> scorer`` under ``name``."""

    def deco(factory: ScorerFactory) -> ScorerFactory:
        if name in _SCORERS:
            raise ValueError(f"scorer {name!r} is registered twice")
        _SCORERS[name] = (factory, summary)
        return factory

    return deco


def scorer_names() -> list[str]:
    return sorted(_SCORERS)


def describe_scorers() -> list[tuple[str, str]]:
    return [(n, _SCORERS[n][1]) for n in scorer_names()]


def create_scorer(name: str, engine: Any = None, **options: Any) -> Any:
    try:
        factory, _ = _SCORERS[name]
    except KeyError:
        raise ValueError(f"unknown scorer {name!r}; known: {', '.join(scorer_names())}") from None
    return factory(engine, **options)
