"""What every task shares: the protocol, the base class, answer-equivalence grading, the
registry.

A task turns a data source into ``Problem``s (chat messages, a reference kept for grading,
metadata for scorers) and grades what a strategy returned. Grading uses what the solver
never sees (the reference answer, hidden tests); scorers see only ``Problem.metadata``.
Settings are a frozen ``Config`` dataclass; unknown or invalid settings raise ``ValueError``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

from ponder.options import make_config
from ponder.scoring.answers import answers_equivalent, extract_answer, normalize_answer
from ponder.types import Candidate, Problem, Result


@runtime_checkable
class Task(Protocol):
    """A source of problems and the rule that grades answers to them."""

    name: ClassVar[str]
    summary: ClassVar[str]
    answer_kind: str

    def problems(
        self, limit: int | None = None, seed: int = 0, **options: Any
    ) -> list[Problem]: ...

    async def grade(self, problem: Problem, result: Result) -> bool: ...

    async def grade_candidates(
        self, problem: Problem, candidates: Sequence[Candidate]
    ) -> list[bool]: ...

    def options(self) -> dict[str, Any]: ...


class TaskBase:
    """Base class: holds the validated config, grades results through ``grade_candidate``.

    Subclasses set ``name``, ``summary``, ``Config`` and implement ``load(limit, seed)`` and
    ``grade_candidate(problem, candidate)`` (sync or async).
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    Config: ClassVar[type[Any]]

    def __init__(self, **options: Any) -> None:
        self.config = make_config(self.Config, options, f"task {self.name!r}", "option")

    @property
    def answer_kind(self) -> str:
        return str(getattr(self.config, "answer_kind", "auto"))

    def options(self) -> dict[str, Any]:
        """The task's settings, as recorded with every run."""
        return dataclasses.asdict(self.config)

    def problems(self, limit: int | None = None, seed: int = 0, **options: Any) -> list[Problem]:
        """The first ``limit`` problems (all when None); ``options`` override settings."""
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        if options:
            return type(self)(**{**self.options(), **options}).problems(limit, seed)
        return self.load(limit, seed)

    def load(self, limit: int | None, seed: int) -> list[Problem]:
        raise NotImplementedError

    def grade_candidate(self, problem: Problem, candidate: Candidate) -> Any:
        raise NotImplementedError

    def grading_key(self, candidate: Candidate) -> str:
        """Candidates with equal keys get the same grade (graded once)."""
        if candidate.answer is not None:
            return "answer:" + normalize_answer(candidate.answer)
        return "text:" + candidate.text

    async def _grade_one(self, problem: Problem, candidate: Candidate) -> bool:
        verdict = self.grade_candidate(problem, candidate)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        return bool(verdict)

    async def grade(self, problem: Problem, result: Result) -> bool:
        """Whether the answer the strategy chose is correct."""
        if result.best is not None:
            return await self._grade_one(problem, result.best)
        if result.answer is None:
            return False
        return await self._grade_one(problem, Candidate(result.answer, result.answer, 0))

    async def grade_candidates(
        self, problem: Problem, candidates: Sequence[Candidate]
    ) -> list[bool]:
        """The grade of every candidate (for coverage / pass@k), each distinct one once."""
        keys = [self.grading_key(c) for c in candidates]
        first: dict[str, Candidate] = {}
        for k, c in zip(keys, candidates, strict=True):
            first.setdefault(k, c)
        verdicts = await asyncio.gather(*(self._grade_one(problem, c) for c in first.values()))
        by_key = dict(zip(first, verdicts, strict=True))
        return [by_key[k] for k in keys]


class AnswerTask(TaskBase):
    """A task graded by answer equivalence: the candidate's final answer (extracted with the
    task's ``answer_kind`` when the strategy found none) against the reference's."""

    def reference_answer(self, reference: str) -> str:
        return extract_answer(reference, self.answer_kind) or reference.strip()

    def grade_candidate(self, problem: Problem, candidate: Candidate) -> Any:
        if problem.reference is None:
            raise ValueError(f"problem {problem.id!r} has no reference answer to grade against")
        answer = candidate.answer
        if answer is None:
            answer = extract_answer(candidate.text, self.answer_kind)
        return answers_equivalent(answer, self.reference_answer(problem.reference))


_REGISTRY: dict[str, Callable[..., Task]] = {}


def register_task(cls: type[Any]) -> type[Any]:
    """Class decorator: make a task available by its ``name``."""
    if cls.name in _REGISTRY:
        raise ValueError(f"task {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def create_task(name: str, **options: Any) -> Task:
    """The task registered as ``name`` with ``options``; ``ValueError`` when unknown."""
    factory: Callable[..., Task] = task_class(name)
    return factory(**options)


def task_class(name: str) -> Any:
    """The class registered as task ``name`` (its ``Config`` lists the task's options)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(task_names())}") from None


def task_names() -> list[str]:
    return sorted(_REGISTRY)


def describe_tasks() -> list[tuple[str, str]]:
    """``(name, one-line summary)`` for every task."""
    return [(n, _REGISTRY[n].summary) for n in task_names()]  # type: ignore[attr-defined]
