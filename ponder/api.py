"""The Python entry points: ``ponder.solve`` and ``ponder.load_engine``."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

from ponder import models
from ponder.engines.base import Engine
from ponder.scoring import create_scorer
from ponder.strategies import canonical, create
from ponder.types import Budget, Problem, Result

DEFAULT_STRATEGY = "self-consistency"


def load_engine(model: str = models.DEFAULT_MODEL, **options: Any) -> Engine:
    """An embedded llama.cpp engine for a registry name or a GGUF path."""
    from ponder.engines.llamacpp.engine import LlamaCppEngine

    return LlamaCppEngine(model, **options)


async def solve_async(
    problem: Problem,
    engine: Engine,
    strategy: str = DEFAULT_STRATEGY,
    budget: int | Budget = 8,
    scorer: Any = None,
    **config: Any,
) -> Result:
    """Run ``strategy`` on ``problem``. ``scorer`` is a scorer object, a registered scorer
    name (built against ``engine``), or None."""
    b = budget if isinstance(budget, Budget) else Budget(n=budget)
    if isinstance(scorer, str):
        scorer = create_scorer(scorer, engine)
    strat = create(strategy, **config)
    start = time.perf_counter()
    result = await strat.run(problem, engine, scorer, b)
    return replace(
        result,
        strategy=canonical(strategy),
        usage=replace(result.usage, seconds=time.perf_counter() - start),
    )


def solve(
    question: str | Problem,
    strategy: str = DEFAULT_STRATEGY,
    budget: int | Budget = 8,
    engine: Engine | None = None,
    model: str = models.DEFAULT_MODEL,
    scorer: Any = None,
    **config: Any,
) -> Result:
    """Answer ``question`` with ``strategy`` at ``budget``; returns the answer and evidence.

    Without ``engine``, loads ``model`` for this call and closes it afterwards.
    """
    problem = question if isinstance(question, Problem) else Problem.from_question(question)
    own = engine is None
    eng = engine if engine is not None else load_engine(model)
    try:
        return asyncio.run(solve_async(problem, eng, strategy, budget, scorer, **config))
    finally:
        if own:
            eng.close()
