"""The engine protocol: batches of requests in, lists of completions out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ponder.types import Completion, Request


class EngineError(RuntimeError):
    """An engine could not serve a request."""


class ContextOverflowError(EngineError, ValueError):
    """A request does not fit the engine's context window."""


@dataclass(frozen=True)
class Capabilities:
    logprobs: bool
    prefix_cache: bool
    max_parallel: int
    max_context: int


@runtime_checkable
class Engine(Protocol):
    """How tokens are made. Strategies see only this.

    ``generate`` takes a batch of requests and returns, for each, its ``n`` completions
    in order, raising the first failure. ``generate_settled`` returns each failure in
    its request's place instead. A failing request never disturbs the others.
    """

    name: str

    @property
    def capabilities(self) -> Capabilities: ...

    async def generate(self, requests: Sequence[Request]) -> list[list[Completion]]: ...

    async def generate_settled(
        self, requests: Sequence[Request]
    ) -> list[list[Completion] | Exception]: ...

    def generate_sync(self, requests: Sequence[Request]) -> list[list[Completion]]: ...

    def close(self) -> None: ...


def raise_first_failure(settled: Sequence[list[Completion] | Exception]) -> list[list[Completion]]:
    """``generate`` from ``generate_settled``'s answer: every request's completions, or the
    first failure (in request order) raised."""
    for result in settled:
        if isinstance(result, Exception):
            raise result
    return [result for result in settled if not isinstance(result, Exception)]
