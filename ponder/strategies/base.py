"""What every strategy shares: the protocol, the base class, the registry.

A strategy is pure control logic: ``run(problem, engine, scorer, budget) -> Result``. It
sends its work to the engine in batches, accumulates the ``Usage`` of every engine and
scorer call, and fills ``Result.trace`` (see ``ponder.strategies.trace``) so the UI can
draw what happened. Its settings are a frozen ``Config`` dataclass with the paper's
defaults; unknown or invalid settings raise ``ValueError``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

from ponder.engines.base import Engine
from ponder.options import make_config
from ponder.types import Budget, Problem, Result


class Strategy(Protocol):
    """How compute is spent on one problem. Pure control logic: no engine specifics."""

    name: ClassVar[str]
    summary: ClassVar[str]
    budget_means: ClassVar[str]

    async def run(
        self, problem: Problem, engine: Engine, scorer: Any, budget: Budget
    ) -> Result: ...


class StrategyBase:
    """Base class: holds the validated config. Subclasses set the class variables and
    implement ``run``."""

    name: ClassVar[str]
    summary: ClassVar[str]
    budget_means: ClassVar[str]
    Config: ClassVar[type[Any]]
    aliases: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **config: Any) -> None:
        self.config = make_config(self.Config, config, f"strategy {self.name!r}")

    async def run(self, problem: Problem, engine: Engine, scorer: Any, budget: Budget) -> Result:
        raise NotImplementedError


_REGISTRY: dict[str, Callable[..., Strategy]] = {}
_ALIASES: dict[str, str] = {}


def register(cls: type[Any]) -> type[Any]:
    """Class decorator: make a strategy available by its ``name`` (and its ``aliases``)."""
    for key in (cls.name, *getattr(cls, "aliases", ())):
        if key in _REGISTRY or key in _ALIASES:
            raise ValueError(f"strategy {key!r} is registered twice")
    _REGISTRY[cls.name] = cls
    for alias in getattr(cls, "aliases", ()):
        _ALIASES[alias] = cls.name
    return cls


def canonical(name: str) -> str:
    """The registered name for ``name`` (resolving aliases); ``ValueError`` when unknown."""
    name = _ALIASES.get(name, name)
    if name not in _REGISTRY:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(names())}")
    return name


def create(name: str, **config: Any) -> Strategy:
    return _REGISTRY[canonical(name)](**config)


def settings(name: str) -> frozenset[str]:
    """The settings strategy ``name`` takes (its ``Config`` fields), without building it;
    ``ValueError`` when the name is unknown."""
    config = getattr(_REGISTRY[canonical(name)], "Config", None)
    if config is None or not dataclasses.is_dataclass(config):
        return frozenset()
    return frozenset(f.name for f in dataclasses.fields(config))


def names(with_aliases: bool = False) -> list[str]:
    return sorted([*_REGISTRY, *(_ALIASES if with_aliases else ())])


def describe() -> list[tuple[str, str, str]]:
    """``(name, one-line summary, what the budget counts)`` for every strategy."""
    return [(n, _REGISTRY[n].summary, _REGISTRY[n].budget_means) for n in names()]  # type: ignore[attr-defined]
