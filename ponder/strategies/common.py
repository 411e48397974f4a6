"""Pieces every strategy reuses: sampling settings, candidates, step generation, usage."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ponder.engines.base import Engine
from ponder.scoring.answers import KINDS, extract_answer
from ponder.strategies.selection import check_unfinished
from ponder.types import Budget, Candidate, Completion, Problem, Request, SamplingParams, Usage


@dataclass(frozen=True)
class SamplingConfig:
    """Sampling settings shared by every sampling strategy (subclass it to add fields)."""

    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.0
    max_tokens: int = 512
    seed: int | None = 0
    answer_kind: str = "auto"

    def __post_init__(self) -> None:
        if self.answer_kind not in KINDS:
            raise ValueError(f"answer_kind must be one of {KINDS}, got {self.answer_kind!r}")
        # Validate the sampling fields now, with SamplingParams' own messages.
        self.sampling(Budget())

    def sampling(self, budget: Budget, **overrides: Any) -> SamplingParams:
        """The per-sample parameters, with ``max_tokens`` capped by the budget."""
        max_tokens = self.max_tokens
        if budget.max_tokens is not None:
            max_tokens = min(max_tokens, budget.max_tokens)
        params = SamplingParams(
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            min_p=self.min_p,
            max_tokens=max_tokens,
            seed=self.seed,
        )
        return replace(params, **overrides) if overrides else params


@dataclass(frozen=True)
class BallotConfig(SamplingConfig):
    """The sampling settings of a voting strategy, and ``unfinished``: whether samples cut
    off by the token cap vote (``"vote"``, the default) or not (``"drop"``; see
    ``selection.ballots``). Added after runs were stored, so it is named in a run's
    configuration only when set and those runs keep their ids."""

    unfinished: str = field(default="vote", metadata={"named_when_set": True})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_unfinished(self.unfinished)


def need_logprobs(engine: Engine, strategy: str) -> None:
    if not engine.capabilities.logprobs:
        raise ValueError(
            f"strategy {strategy!r} needs token log-probabilities, and engine "
            f"{engine.name!r} does not provide them; use an engine (or server) with logprobs"
        )


def to_candidate(c: Completion, answer_kind: str = "auto", **fields: Any) -> Candidate:
    """A candidate from one completion: its text, extracted answer and evidence."""
    return Candidate(
        text=c.text,
        answer=extract_answer(c.text, answer_kind),
        tokens=c.tokens,
        mean_logprob=c.mean_logprob,
        finish_reason=c.finish_reason,
        **fields,
    )


def usage_of(completions: Sequence[Completion] | Sequence[Sequence[Completion]]) -> Usage:
    """Total usage of a flat or nested list of completions."""
    total = Usage()
    for item in completions:
        total = total + (item.usage if isinstance(item, Completion) else usage_of(item))
    return total


async def sample(
    engine: Engine, problem: Problem, params: SamplingParams, n: int, partial: str = ""
) -> list[Completion]:
    """``n`` samples of the answer to ``problem`` in one batched request."""
    [out] = await engine.generate([Request(problem.messages, params, n=n, partial=partial)])
    return out


@dataclass(frozen=True)
class Step:
    """One generated step of a partial solution."""

    text: str
    tokens: int
    finished: bool  # the solution ended (end of turn, or the token cap)
    completion: Completion
