"""``ponder tune TASK``: fit a recipe for the ``auto`` strategy from sample pools
(docs/EVALS.md, "Tuning a recipe").

It draws one pool of ``--pool`` samples per problem and seed (reusing every pool already in
``--db`` for the same settings), splits the problems into a development and a held-back
part (a seeded random split, written into the report), simulates every fixed pool rule at
every k and a grid of recipes on the development part, fits the recipe, and measures it and
the best fixed rule on the held-back part. ``--pools-from RUN_ID`` adds the pools of
other runs in the same database (e.g. other levels of a generated task). It writes
``recipe.json``, ``report.txt``, ``report.json`` and ``frontier.png`` into ``--out``.
With ``--recipe FILE`` it fits nothing: it measures that recipe against the fixed rules on
all the problems (e.g. a recipe tuned on another task).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from ponder import models
from ponder.cli.common import (
    add_engine_arguments,
    add_scorer_arguments,
    scorer_options,
)
from ponder.cli.evaluate import add_task_command, draw_pools, task_options


def add_parsers(sub: Any) -> None:
    add_task_command(
        sub,
        "tune",
        "fit a recipe for the auto strategy from sample pools (docs/EVALS.md)",
        __doc__,
        add_tune_arguments,
        run,
    )


def add_tune_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("pools")
    g.add_argument("--pool", type=int, default=16, help="samples per problem and seed")
    g.add_argument("--seeds", type=int, default=1, help="pools per problem (seeds 0..N-1)")
    g.add_argument("--limit", type=int, default=0, help="first N problems (0: the task's all)")
    g.add_argument("--db", default="runs.sqlite", help="results database (pools are reused)")
    g.add_argument("--concurrency", type=int, default=4, help="pools in flight")
    g.add_argument("--max-tokens", type=int, default=512, help="per-sample token cap")
    g.add_argument("--temperature", type=float, default=0.7, help="sampling temperature")
    g.add_argument(
        "--top-logprobs", type=int, default=20, help="0 skips confidence-vote's statistics"
    )
    f = p.add_argument_group("the fit")
    f.add_argument(
        "--max-tokens-per-problem",
        type=float,
        default=None,
        help="the most accurate recipe within this many generated tokens per problem "
        "(default: the fewest tokens at the best fixed rule's accuracy)",
    )
    f.add_argument("--dev-fraction", type=float, default=0.5, help="share of problems to fit on")
    f.add_argument("--split-seed", type=int, default=0, help="seed of the random split")
    f.add_argument("--subsets", type=int, default=200, help="random k-subsets per estimate")
    f.add_argument(
        "--rules", default="", help="fixed pool rules to compare with, e.g. vote,best-of-n"
    )
    f.add_argument("--recipe", default="", help="assess this recipe file instead of fitting")
    f.add_argument(
        "--pools-from",
        action="append",
        default=[],
        metavar="RUN_ID",
        help="also use this pool run's pools from --db (repeatable), e.g. other levels",
    )
    f.add_argument("--out", default="", help="output folder (default tune-TASK)")
    add_scorer_arguments(p)
    add_engine_arguments(p)


def run(args: argparse.Namespace) -> int:
    """Draw or reuse the pools, fit (or assess), write the recipe and the report."""
    from ponder.evals.estimators import parse_estimators
    from ponder.evals.pool import PoolConfig
    from ponder.evals.store import Store
    from ponder.evals.tune import assess, split, tune
    from ponder.evals.tune_report import json_report, plot_frontier, text_report
    from ponder.strategies.recipes import load, save
    from ponder.tasks import create_task

    task = create_task(args.task, **task_options(args))
    config = PoolConfig(
        n=args.pool,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        top_logprobs=args.top_logprobs,
    )
    given = load(args.recipe) if args.recipe else None
    if given is not None and given.total_draws > args.pool:
        raise ValueError(f"the recipe draws {given.total_draws} samples; --pool is {args.pool}")
    if args.max_tokens_per_problem is not None and args.max_tokens_per_problem <= 0:
        raise ValueError("--max-tokens-per-problem must be > 0")
    task.problems(args.limit or None, seed=args.task_seed)
    scorers = [args.scorer] if args.scorer else []
    model = args.model or (models.DEFAULT_MODEL if args.engine == "llamacpp" else None)
    out = Path(args.out or f"tune-{args.task}")
    summary = draw_pools(
        args,
        task,
        config,
        scorers,
        {args.scorer: scorer_options(args)} if args.scorer else None,
    )
    if summary.pools_failed:
        raise ValueError(
            f"{summary.pools_failed} pools failed (see `ponder report {args.db}`); "
            "run the same command again to retry them"
        )
    with Store(args.db) as store:
        pools = store.pools(summary.run_id)
        for run_id in args.pools_from:
            more = store.pools(run_id)
            if not more:
                raise ValueError(f"--pools-from {run_id}: no pools of that run in {args.db}")
            pools += more
    rules = parse_estimators(args.rules, scorers) if args.rules else None
    if given is not None:
        result = assess(given, pools, rules, args.subsets)
        recipe = given
    else:
        dev, held = split([p.problem_id for p in pools], args.dev_fraction, args.split_seed)
        result = tune(pools, dev, held, args.max_tokens_per_problem, None, args.subsets, rules)
        recipe = dataclasses.replace(result.recipe, about=_about(args, model, result, summary))
    header = (
        f"ponder tune {args.task}: pool run {summary.run_id} ({len(pools)} pools of "
        f"{args.pool}; {summary.pools_already_done} reused, {summary.pools_run} drawn); "
        f"model {model or '(server default)'}; temperature {args.temperature}, "
        f"max_tokens {args.max_tokens}"
    )
    out.mkdir(parents=True, exist_ok=True)
    written = [save(recipe, out / "recipe.json")] if given is None else []
    (out / "report.txt").write_text(text_report(result, header))
    (out / "report.json").write_text(json.dumps(json_report(result), indent=2) + "\n")
    written += [out / "report.txt", out / "report.json"]
    written.append(plot_frontier(result, out / "frontier.png", f"ponder tune {args.task}"))
    print(text_report(result, header), end="")
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _about(
    args: argparse.Namespace, model: str | None, result: Any, summary: Any
) -> dict[str, Any]:
    """Where a fitted recipe came from, and the figures it was fitted to."""
    held = result.held_recipe
    return {
        "fitted_by": "ponder tune",
        "task": args.task,
        "model": model,
        "pool_run": summary.run_id,
        "pool": args.pool,
        "temperature": args.temperature,
        "max_tokens": args.max_tokens,
        "objective": result.objective,
        "dev_problems": len(result.dev_ids),
        "dev_accuracy": round(result.chosen.accuracy, 4),
        "dev_tokens_per_problem": round(result.chosen.tokens, 1),
        "best_fixed": result.best_fixed.label,
        "held_accuracy": None if held is None else round(held.accuracy, 4),
        "held_tokens_per_problem": None if held is None else round(held.tokens, 1),
    }
