"""What ``ponder eval --pool`` and ``ponder tune`` share: drawing sample pools from the
command's options."""

from __future__ import annotations

import argparse
from typing import Any

from ponder import models


def recorded_model(args: argparse.Namespace) -> str | None:
    """The model name a run records: ``--model``, else the default model on the embedded
    engine, else None (the server's own)."""
    return args.model or (models.DEFAULT_MODEL if args.engine == "llamacpp" else None)


def pool_scorer_names(args: argparse.Namespace) -> list[str]:
    """The ``--pool-scorers`` names, blanks dropped."""
    return [s.strip() for s in args.pool_scorers.split(",") if s.strip()]


def draw_pools(
    args: argparse.Namespace,
    task: Any,
    config: Any,
    engine: Any,
    db: Any,
    scorers: list[str],
    scorer_options: dict[str, Any] | None = None,
) -> Any:
    """Every missing pool of ``task`` at ``config`` drawn on ``engine`` into ``db`` (a path
    or an open ``Store``): ``--seeds`` pools per problem of the first ``--limit`` problems
    (seeded by ``--task-seed``), ``--concurrency`` at once; the ``PoolSummary``."""
    from ponder.evals.pool import run_pool

    return run_pool(
        task,
        config,
        args.seeds,
        args.limit or None,
        db,
        engine,
        scorers,
        concurrency=args.concurrency,
        model=recorded_model(args),
        task_seed=args.task_seed,
        scorer_options=scorer_options,
    )
