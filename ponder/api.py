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


def _llamacpp(model: str | None, **options: Any) -> Engine:
    from ponder.engines.llamacpp.engine import LlamaCppEngine

    return LlamaCppEngine(model or models.DEFAULT_MODEL, **options)


def _openai(model: str | None, **options: Any) -> Engine:
    from ponder.engines.openai import OpenAIEngine

    urls = options.pop("base_url", None) or options.pop("base_urls", None)
    if not urls:
        raise ValueError("the openai engine needs base_url=<server URL or list of URLs>")
    return OpenAIEngine(urls, model, **options)


ENGINES = {"llamacpp": _llamacpp, "openai": _openai}
"""Engine kinds by name: ``factory(model, **options)``."""


def load_engine(model: str | None = None, engine: str = "llamacpp", **options: Any) -> Engine:
    """An engine of kind ``engine`` (a key of ``ENGINES``).

    ``llamacpp`` (embedded): ``model`` is a registry name or a GGUF path (default: the
    default model). ``openai``: ``base_url`` is a server URL or a list of them, ``model``
    the served model name (default: the server's first); other options go to
    ``OpenAIEngine`` (``api_key``, ``chat_template``, ``max_connections``, ...).
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; one of {', '.join(ENGINES)}")
    return ENGINES[engine](model, **options)


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

    Without ``engine``, loads ``model`` for this call (with the one-problem attention
    setting, ``native.one_problem_flash_attn``) and closes it afterwards.
    """
    problem = question if isinstance(question, Problem) else Problem.from_question(question)
    own = engine is None
    if engine is None:
        from ponder.engines.llamacpp.native import one_problem_flash_attn

        eng = load_engine(model, flash_attn=one_problem_flash_attn())
    else:
        eng = engine
    try:
        return asyncio.run(solve_async(problem, eng, strategy, budget, scorer, **config))
    finally:
        if own:
            eng.close()
