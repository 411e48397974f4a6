"""What ``ponder eval --pool`` and ``ponder tune`` share: drawing sample pools from the
command's options."""

from __future__ import annotations

import argparse
from typing import Any

from ponder import models
from ponder.options import parse_pairs


def recorded_model(args: argparse.Namespace) -> str | None:
    """The model name a run records: ``--model``, else the default model on the embedded
    engine, else None (the server's own)."""
    return args.model or (models.DEFAULT_MODEL if args.engine == "llamacpp" else None)


def pool_scorer_names(args: argparse.Namespace) -> list[str]:
    """The ``--pool-scorers`` names, blanks dropped."""
    return [s.strip() for s in args.pool_scorers.split(",") if s.strip()]


def pool_scorers(
    args: argparse.Namespace, scorer: str = ""
) -> tuple[list[str], dict[str, dict[str, Any]] | None]:
    """The pool's scorers and their options: the ``--pool-scorers`` names (or the one
    ``scorer``, which a command may accept instead), and the ``--scorer-set`` options, which
    set a single scorer's options (an error with several, so none is silently dropped)."""
    names = pool_scorer_names(args)
    if scorer:
        if names:
            raise ValueError("give either --scorer (with --scorer-set) or --pool-scorers")
        names = [scorer]
    options = parse_pairs(getattr(args, "scorer_set", None), "--scorer-set")
    if not options:
        return names, None
    if len(names) != 1:
        named = f"{len(names)} are named ({', '.join(names)})" if names else "none is named"
        raise ValueError(
            f"--scorer-set sets one pool scorer's options and {named}: "
            "give --pool-scorers a single NAME to set its options"
        )
    return names, {names[0]: options}


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
        scorer_options=scorer_options,
        **run_options(args),
    )


def run_options(args: argparse.Namespace) -> dict[str, Any]:
    """What every pool command passes on from its options: problems in flight, the model
    to record, the task seed."""
    return {
        "concurrency": args.concurrency,
        "model": recorded_model(args),
        "task_seed": args.task_seed,
    }
