"""What every strategy shares: the registry and the protocol."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Protocol

from ponder.engines.base import Engine
from ponder.types import Budget, Problem, Result


class Strategy(Protocol):
    """How compute is spent on one problem. Pure control logic: no engine specifics."""

    name: ClassVar[str]
    summary: ClassVar[str]
    budget_means: ClassVar[str]

    async def run(self, problem: Problem, engine: Engine, budget: Budget) -> Result: ...


_REGISTRY: dict[str, Callable[..., Strategy]] = {}


def register(cls: type[Any]) -> type[Any]:
    """Class decorator: make a strategy available by its ``name``."""
    if cls.name in _REGISTRY:
        raise ValueError(f"strategy {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def create(name: str, **config: Any) -> Strategy:
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(names())}") from None
    return factory(**config)


def names() -> list[str]:
    return sorted(_REGISTRY)


def describe() -> list[tuple[str, str, str]]:
    """``(name, one-line summary, what the budget counts)`` for every strategy."""
    return [(n, _REGISTRY[n].summary, _REGISTRY[n].budget_means) for n in names()]  # type: ignore[attr-defined]
