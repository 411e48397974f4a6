"""``ponder eval TASK``: a grid of strategies × budgets × seeds over a task's problems,
into a resumable results database (docs/EVALS.md).

Each task declares its own options (its ``Config`` fields), so a new task needs no edit
here: ``ponder eval arithmetic --level 3``, ``ponder eval jsonl --path FILE``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ponder.cli.common import (
    add_engine_arguments,
    add_scorer_arguments,
    engine_from_args,
    engine_options,
    ints,
    scorer_from_args,
    scorer_options,
)
from ponder.cli.pools import draw_pools, pool_scorers, recorded_model, run_options
from ponder.options import parse_pairs
from ponder.tasks import describe_tasks, task_class

DEFAULT_STRATEGIES = "greedy,vote"
DEFAULT_BUDGETS = "1,2,4,8,16"
_TASK_DEST = "task__"
_TYPES: dict[str, Any] = {"int": int, "float": float, "str": str}


def add_parsers(sub: Any) -> None:
    add_task_command(
        sub,
        "eval",
        "evaluate strategies on a task (docs/EVALS.md)",
        __doc__,
        add_eval_arguments,
        run,
    )


def add_task_command(
    sub: Any,
    command: str,
    help_text: str,
    description: str | None,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    func: Callable[[argparse.Namespace], int],
) -> None:
    """``ponder COMMAND TASK``: one subcommand per registered task, each with the task's
    own options and then the command's (``add_arguments``)."""
    e = sub.add_parser(
        command,
        help=help_text,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tasks = e.add_subparsers(dest="task", required=True, metavar="TASK")
    for name, summary in describe_tasks():
        t = tasks.add_parser(name, help=summary, description=summary)
        add_task_arguments(t, name)
        add_arguments(t)
        t.set_defaults(func=func)


def add_task_arguments(p: argparse.ArgumentParser, task: str) -> None:
    """One ``--option`` per field of the task's ``Config``, typed by its annotation."""
    g = p.add_argument_group(f"{task} options")
    config = task_class(task).Config
    for f in dataclasses.fields(config):
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type)
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = f.metadata.get("help", "") if f.metadata else ""
        help_text = f"{help_text} (default {default!r})".strip()
        g.add_argument(
            flag,
            dest=_TASK_DEST + f.name,
            metavar=f.name.upper(),
            type=_TYPES.get(kind, str),
            default=None,
            help=help_text,
        )
    g.add_argument("--task-set", action="append", metavar="KEY=VALUE", help="task option")
    g.add_argument("--task-seed", type=int, default=0, help="problem set of generated tasks")


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("the grid")
    g.add_argument(
        "--strategies",
        default=DEFAULT_STRATEGIES,
        help="e.g. greedy,vote[temperature=1] (default %(default)s)",
    )
    g.add_argument("--budgets", default=DEFAULT_BUDGETS, help="comma list (default %(default)s)")
    g.add_argument("--seeds", type=int, default=1, help="seeds per cell (0..N-1)")
    g.add_argument("--limit", type=int, default=0, help="first N problems (0: the task's all)")
    g.add_argument("--db", default="runs.sqlite", help="results database (resumes from it)")
    g.add_argument("--concurrency", type=int, default=8, help="cells in flight (per Ray actor)")
    g.add_argument("--set", action="append", metavar="KEY=VALUE", help="strategy setting")
    g.add_argument("--max-tokens", type=int, default=0, help="strategies' max_tokens")
    s = p.add_argument_group(
        "sample pools (docs/EVALS.md): N samples per problem and seed, drawn once; every "
        "sampling strategy at every k <= N is estimated from them by `ponder report`"
    )
    s.add_argument("--pool", type=int, default=0, metavar="N", help="draw pools of N samples")
    s.add_argument(
        "--pool-scorers",
        default="",
        metavar="NAMES",
        help="comma list of scorers computed once per sample (e.g. visible-tests,judge)",
    )
    s.add_argument(
        "--samples-from",
        default="",
        metavar="RUN",
        help="score the stored samples of pool run RUN (in --db) with --pool-scorers, "
        "generating nothing: a new pool run with the same samples and the new scores",
    )
    r = p.add_argument_group("Ray (pip install 'ponder[ray]'; docs/EVALS.md)")
    r.add_argument("--ray", default="", metavar="auto|local|ADDRESS", help="run cells on Ray")
    r.add_argument("--ray-actors", type=int, default=2, help="Ray actors, one engine each")
    r.add_argument("--ray-cpus", type=float, default=1.0, help="CPUs Ray reserves per actor")
    add_scorer_arguments(p)
    add_engine_arguments(p)


def task_options(args: argparse.Namespace) -> dict[str, Any]:
    """The task's settings: ``--task-set`` pairs, then the typed per-field flags."""
    options = parse_pairs(args.task_set, "--task-set")
    for key, value in vars(args).items():
        if key.startswith(_TASK_DEST) and value is not None:
            options[key[len(_TASK_DEST) :]] = value
    return options


def strategy_specs(args: argparse.Namespace) -> list[Any]:
    """The ``--strategies`` specs with the ``--set`` settings given to every strategy
    that takes them (an error when none does)."""
    from ponder.evals.runner import StrategySpec, parse_strategies
    from ponder.strategies import settings

    shared = parse_pairs(args.set, "--set")
    if args.max_tokens:
        shared["max_tokens"] = args.max_tokens
    specs = parse_strategies(args.strategies)
    for key in shared:
        if not any(key in settings(s.name) for s in specs):
            raise ValueError(f"no strategy in {args.strategies!r} has a setting {key!r}")
    return [
        StrategySpec(
            s.label,
            s.name,
            {**{k: v for k, v in shared.items() if k in settings(s.name)}, **s.config},
        )
        for s in specs
    ]


def run(args: argparse.Namespace) -> int:
    """Run the grid into the database and print what was done."""
    from ponder.evals.runner import run_eval
    from ponder.tasks import create_task

    options = task_options(args)
    task = create_task(args.task, **options)
    if args.samples_from:
        return rescore(args, task)
    if args.pool:
        return run_pools(args, task)
    if args.pool_scorers:
        raise ValueError("--pool-scorers needs --pool N (or --samples-from RUN)")
    specs = strategy_specs(args)
    budgets = ints(args.budgets, "--budgets")
    task.problems(args.limit or None, seed=args.task_seed)  # bad task input fails before loading
    model = recorded_model(args)
    runner: dict[str, Any]
    if args.ray:
        from ponder.evals.distributed import RayExecutor, connect

        if args.ray_actors < 1:
            raise ValueError(f"--ray-actors must be >= 1, got {args.ray_actors}")
        base = engine_options(args)
        # One OpenAI endpoint per actor, taken in turn; the embedded engine on every actor.
        per_actor = [{**base, "base_url": [url]} for url in base.get("base_url", [])] or [base]
        connect(args.ray)
        executor = RayExecutor(
            args.ray_actors,
            per_actor,
            args.concurrency,
            args.ray_cpus,
            task_name=args.task,
            task_options=options,
            task_seed=args.task_seed,
            limit=args.limit or None,
            specs=specs,
            seeds=list(range(args.seeds)),
            scorer=args.scorer or None,
            scorer_options=scorer_options(args),
        )
        print(
            f"Ray: {len(executor.actors)} actors on {sorted(set(executor.nodes))}", file=sys.stderr
        )
        engine = None
        close = executor.close
        runner = {
            "concurrency": args.concurrency * len(executor.actors),
            "executor": executor,
            "engine_name": args.engine,
        }
    else:
        engine = engine_from_args(args)
        close = engine.close
        runner = {"concurrency": args.concurrency}
    try:
        summary = run_eval(
            task,
            specs,
            budgets,
            args.seeds,
            args.limit or None,
            args.db,
            engine,
            scorer=(args.scorer or None) if engine is None else scorer_from_args(args, engine),
            model=model,
            task_seed=args.task_seed,
            scorer_options=scorer_options(args),
            **runner,
        )
    finally:
        close()
    for failure in summary.failures:
        print(f"failed: {failure}", file=sys.stderr)
    graded = summary.cells_run
    acc = f"{summary.correct / graded:.3f}" if graded else "-"
    print(
        f"run {summary.run_id}: {summary.cells_run} cells run ({acc} correct), "
        f"{summary.cells_already_done} already done, {summary.cells_failed} failed, "
        f"{summary.cells_total} in the grid; {summary.seconds:.1f} s. "
        f"Report: ponder report {args.db}"
    )
    return 1 if summary.cells_failed else 0


def rescore(args: argparse.Namespace, task: Any) -> int:
    """``--samples-from RUN``: score a pool run's stored samples with ``--pool-scorers``
    into a new pool run (``ponder.evals.pool.rescore_pools``) and print what was done."""
    from ponder.evals import Store
    from ponder.evals.pool import rescore_pools, source_run

    drawn = [f for f, v in (("--pool", args.pool), ("--set", args.set)) if v]
    drawn += ["--max-tokens"] if args.max_tokens else []
    drawn += ["--ray"] if args.ray else []
    drawn += ["--scorer"] if args.scorer else []
    if drawn:
        raise ValueError(
            f"--samples-from scores samples already drawn, with --pool-scorers; "
            f"drop {', '.join(drawn)}"
        )
    scorers, options = pool_scorers(args)
    if not scorers:
        raise ValueError("--samples-from needs --pool-scorers NAMES: the scorers to add")
    if not Path(args.db).is_file():
        raise ValueError(f"--samples-from: no results database {args.db}")
    with Store(args.db) as store:
        source_run(store, args.samples_from)  # before the model loads
    task.problems(args.limit or None, seed=args.task_seed)  # bad task input fails before loading
    engine = engine_from_args(args)
    try:
        summary = rescore_pools(
            task,
            args.samples_from,
            args.limit or None,
            args.db,
            engine,
            scorers,
            scorer_options=options,
            **run_options(args),
        )
    finally:
        engine.close()
    print(
        f"run {summary.run_id}: {summary.pools_run} pools scored, "
        f"{summary.pools_already_done} already done, {summary.pools_failed} failed, "
        f"{summary.pools_total} in all (the samples of run {args.samples_from}), "
        f"{summary.seconds:.1f} s. Report: ponder report {args.db}"
    )
    return 1 if summary.pools_failed else 0


def run_pools(args: argparse.Namespace, task: Any) -> int:
    """``--pool N``: draw every missing pool into the database and print what was done.
    ``--set`` and ``--max-tokens`` set the pool's sampling (``PoolConfig``)."""
    from ponder.evals.pool import PoolConfig
    from ponder.options import make_config

    if args.ray:
        raise ValueError("--pool runs on one engine; drop --ray")
    if args.scorer:
        raise ValueError("with --pool, name scorers with --pool-scorers (each scores every sample)")
    settings = parse_pairs(args.set, "--set")
    if args.max_tokens:
        settings["max_tokens"] = args.max_tokens
    config = make_config(PoolConfig, {"n": args.pool, **settings}, "--pool")
    scorers, options = pool_scorers(args)
    task.problems(args.limit or None, seed=args.task_seed)  # bad task input fails before loading
    engine = engine_from_args(args)
    try:
        summary = draw_pools(args, task, config, engine, args.db, scorers, options)
    finally:
        engine.close()
    print(
        f"run {summary.run_id}: {summary.pools_run} pools drawn, {summary.pools_already_done} "
        f"already done, {summary.pools_failed} failed, {summary.pools_total} in all; "
        f"{summary.samples} samples, {summary.tokens_generated} tokens, "
        f"{summary.seconds:.1f} s. Report: ponder report {args.db}"
    )
    return 1 if summary.pools_failed else 0
