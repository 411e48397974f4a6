"""The ``no_more`` signal for stored pools: the model's P(yes) to "would more attempts give
a better answer?" about each of a pool's first samples, asked once and kept in the store.

``ponder tune`` fits thresholds on ``no_more`` (``ponder.strategies.recipes.more``) only
from pools, so it needs P(yes) for the samples a recipe would ask about: the first
``first`` samples of every pool (the grid's recipes ask after their first stage, at most 4
samples). It is asked after the pools are drawn, not while they are drawn: pools drawn
before (by ``ponder eval --pool`` or an earlier ``tune``) keep their run id and are reused
as they are, and each sample's P(yes) is added to its ``stats`` (``p_yes``, and
``p_yes_tokens``: the tokens generated to ask, one) the first time it is needed; every later
run finds it there and asks nothing. The prompt is the one the live ``auto`` strategy
sends about the same sample text (``more.request``), so the stored value is what ``auto``
reads about that sample, up to the engine's floating-point differences between batches.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass

from ponder.engines.base import Engine
from ponder.evals.runner import drain
from ponder.evals.store import PoolRecord, Store
from ponder.strategies.recipes import more
from ponder.types import Problem, Usage

STAT = "p_yes"
TOKENS = "p_yes_tokens"


@dataclass(frozen=True)
class AskSummary:
    """What one ``ask_pools`` did: samples asked now, samples found already asked, the
    usage of asking, and how many answers had neither yes nor no among the top tokens."""

    asked: int
    cached: int
    usage: Usage
    undecided: int
    seconds: float


def missing(pool: PoolRecord, first: int) -> list[int]:
    """The indexes among the pool's first ``first`` samples without a stored P(yes)."""
    return [i for i, s in enumerate(pool.samples[:first]) if STAT not in s.stats]


async def ask_pools_async(
    store: Store,
    pools: list[PoolRecord],
    problems: Mapping[str, Problem],
    engine: Engine,
    first: int,
    concurrency: int = 4,
) -> AskSummary:
    """Ask P(yes) about each pool's first ``first`` samples that lack it (one engine call
    per pool, at most ``concurrency`` pools at once), store each pool's answers as they
    come, and return the summary. ``problems``: problem id -> problem (its messages open
    the question's conversation)."""
    if first < 0:
        raise ValueError(f"the number of samples to ask about must be >= 0, got {first}")
    todo = [(p, missing(p, first)) for p in pools]
    todo = [(p, ix) for p, ix in todo if ix]
    absent = sorted({p.problem_id for p, _ in todo} - set(problems))
    if absent:
        raise ValueError(f"no problem to ask about for pool(s) of {', '.join(absent[:3])}")
    cached = sum(min(first, p.n) for p in pools) - sum(len(ix) for _, ix in todo)
    started = time.monotonic()
    usage, undecided, asked = Usage(), 0, 0

    async def one(item: tuple[PoolRecord, list[int]]) -> None:
        nonlocal usage, undecided, asked
        pool, indexes = item
        problem = problems[pool.problem_id]
        out = await more.ask(engine, problem, [pool.samples[i].text for i in indexes])
        stats = {
            i: {STAT: p, TOKENS: t} for i, p, t in zip(indexes, out.p_yes, out.tokens, strict=True)
        }
        store.add_sample_stats(pool.run_id, pool.problem_id, pool.seed, stats)
        usage, undecided, asked = usage + out.usage, undecided + out.undecided, asked + len(indexes)

    await drain(todo, concurrency, one)
    return AskSummary(asked, cached, usage, undecided, time.monotonic() - started)


def ask_pools(
    store: Store,
    pools: list[PoolRecord],
    problems: Mapping[str, Problem],
    engine: Engine,
    first: int,
    concurrency: int = 4,
) -> AskSummary:
    """Synchronous ``ask_pools_async``."""
    return asyncio.run(ask_pools_async(store, pools, problems, engine, first, concurrency))
