"""``ponder tune TASK``: fit a recipe for the ``auto`` strategy from sample pools
(docs/EVALS.md, "Tuning a recipe").

It draws one pool of ``--pool`` samples per problem and seed at each of ``--temperatures``
(and each of ``--levels``), reusing every pool already in ``--db`` for the same settings;
asks the model, once per sample and only for the first samples a recipe's first stage may
draw, its P(yes) to "would more attempts give a better answer?" (the ``no_more`` signal;
stored with the sample, so never asked twice); splits the problems into a development and a
held-back part (a seeded random split, written into the report); simulates every fixed pool
rule at every k and temperature and a grid of recipes on the development part; fits the
recipe (``--fit``: by default with a margin for sampling noise, a paired bootstrap over the
development problems), and measures it and the best fixed rule on the held-back part;
``--split-seeds N`` repeats the fit at N other splits and reports the spread. ``--pools-from
RUN_ID`` adds the pools of other runs in the same database. It writes ``recipe.json``,
``report.txt``, ``report.json``, ``report.md`` (a section for docs/RESULTS.md),
``report.html`` and ``frontier.png`` into ``--out``. With ``--recipe FILE`` it fits nothing:
it measures that recipe against the fixed rules on all the problems (e.g. a recipe tuned on
another task).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from ponder.cli.common import (
    add_engine_arguments,
    add_scorer_arguments,
    engine_from_args,
)
from ponder.cli.evaluate import add_task_command, task_options
from ponder.cli.pools import draw_pools, pool_scorers, recorded_model


def add_parsers(sub: Any) -> None:
    add_task_command(
        sub,
        "tune",
        "fit a recipe for the auto strategy from sample pools (docs/EVALS.md)",
        __doc__,
        add_tune_arguments,
        run,
    )


def _floats(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers like 0.5,0.7,1.0, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def _ints(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 1,2,3, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def add_tune_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("pools")
    g.add_argument("--pool", type=int, default=16, help="samples per problem and seed")
    g.add_argument("--seeds", type=int, default=1, help="pools per problem (seeds 0..N-1)")
    g.add_argument("--limit", type=int, default=0, help="first N problems (0: the task's all)")
    g.add_argument("--db", default="runs.sqlite", help="results database (pools are reused)")
    g.add_argument("--concurrency", type=int, default=4, help="pools in flight")
    g.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="per-sample token cap (default: a --recipe's own, else 512)",
    )
    g.add_argument("--temperature", type=float, default=0.7, help="sampling temperature")
    g.add_argument(
        "--temperatures",
        type=_floats,
        default=None,
        metavar="T1,T2,...",
        help="one pool per problem and seed at each temperature; the fit chooses the "
        "recipe's (default: --temperature only)",
    )
    g.add_argument(
        "--levels",
        type=_ints,
        default=None,
        metavar="L1,L2,...",
        help="for a task with a level option (arithmetic): pools at each level, tuned as "
        "one mixed set (--limit problems per level)",
    )
    g.add_argument(
        "--pool-scorers",
        default="",
        metavar="A,B",
        help="score every sample with each scorer, as `ponder eval --pool-scorers` does (the "
        "same scorers reuse that command's pools); recipes may use any of them",
    )
    g.add_argument(
        "--self-eval",
        type=int,
        default=-1,
        metavar="N",
        help="ask the model's P(yes) to 'would more attempts help?' about each pool's first "
        "N samples (default: what the grid's first stages draw, 4 with pools of 16; 0: "
        "no no_more recipes); stored, never asked twice",
    )
    g.add_argument(
        "--top-logprobs",
        type=int,
        default=20,
        help="0 skips confidence-vote's statistics (the fixed rule and the recipes ending in it)",
    )
    f = p.add_argument_group("the fit")
    f.add_argument(
        "--max-tokens-per-problem",
        type=float,
        default=None,
        help="the most accurate recipe within this many generated tokens per problem "
        "(default: the fewest tokens at the best fixed rule's accuracy)",
    )
    f.add_argument(
        "--fit",
        choices=("bootstrap", "plain"),
        default="bootstrap",
        help="bootstrap: keep a margin for sampling noise with a paired bootstrap over the "
        "development problems (docs/EVALS.md, step 5); plain: the cheapest recipe reaching "
        "the best fixed rule's development accuracy (or the most accurate within the budget)",
    )
    f.add_argument(
        "--fit-confidence",
        type=float,
        default=0.8,
        help="bootstrap: share of resamples in which the recipe must not fall below the best "
        "fixed rule by more than --fit-tolerance; with a budget, recipes rank by their "
        "accuracy's 1-confidence quantile (default 0.8)",
    )
    f.add_argument(
        "--fit-tolerance",
        type=float,
        default=0.0,
        help="bootstrap: accuracy shortfall allowed per resample, a share (0.02 = 2 points)",
    )
    f.add_argument("--fit-draws", type=int, default=1000, help="bootstrap resamples")
    f.add_argument("--fit-seed", type=int, default=0, help="seed of the bootstrap resamples")
    f.add_argument("--dev-fraction", type=float, default=0.5, help="share of problems to fit on")
    f.add_argument("--split-seed", type=int, default=0, help="seed of the random split")
    f.add_argument(
        "--split-seeds",
        type=int,
        default=0,
        metavar="N",
        help="also re-fit at split seeds 0..N-1, with the plain fit and this fit, and report "
        "how the held-back figures spread (every candidate is simulated once more, on all "
        "problems; default 0: not)",
    )
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
    f.add_argument(
        "--md-image",
        default="frontier.png",
        help="the frontier plot's path as report.md links it (e.g. images/tune-arith.png)",
    )
    add_scorer_arguments(p)
    add_engine_arguments(p)


def run(args: argparse.Namespace) -> int:
    """Draw or reuse the pools, ask or reuse P(yes), fit (or assess), write the recipe and
    the report."""
    from ponder.evals.estimators import parse_estimators
    from ponder.evals.tune import assess, first_stage_draws, split, tune
    from ponder.evals.tune_report import (
        html_report,
        json_report,
        markdown_report,
        plot_frontier,
        text_report,
    )
    from ponder.evals.tune_splits import split_fits
    from ponder.strategies.recipes import load, save

    fit = _fit(args)
    splits: list[Any] = []
    given = load(args.recipe) if args.recipe else None
    args.max_tokens = _max_tokens(args.max_tokens, given)
    temps = args.temperatures or _recipe_temperatures(given) or [args.temperature]
    if len(set(temps)) != len(temps):
        raise ValueError(f"--temperatures repeats a value: {temps}")
    if given is not None and given.total_draws > args.pool:
        raise ValueError(f"the recipe draws {given.total_draws} samples; --pool is {args.pool}")
    tasks = _tasks(args)
    scorers, options = pool_scorers(args, args.scorer)
    model = recorded_model(args)
    first = first_stage_draws(args.pool) if args.self_eval < 0 else args.self_eval
    if given is not None:
        first = max(first, given.asks) if args.self_eval else given.asks
    out = Path(args.out or f"tune-{args.task}")
    drawn = _draw(args, tasks, temps, scorers, options, first)
    pools = drawn["pools"]
    rules = parse_estimators(args.rules, scorers) if args.rules else None
    every = [p for ps in pools.values() for p in ps]
    if given is not None:
        result = assess(given, pools, rules, args.subsets)
        recipe = given
    else:
        dev, held = split([p.problem_id for p in every], args.dev_fraction, args.split_seed)
        result = tune(
            pools,
            dev,
            held,
            args.max_tokens_per_problem,
            None,
            args.subsets,
            rules,
            fit,
            drawn["confidence"],
        )
        recipe = dataclasses.replace(
            result.recipe,
            about=_about(args, model, result, drawn["run_ids"]),
            max_tokens=args.max_tokens,
        )
        if args.split_seeds:
            fits = {"plain": None} if fit is None else {"plain": None, args.fit: fit}
            splits = split_fits(
                pools,
                range(args.split_seeds),
                fits,
                args.dev_fraction,
                args.max_tokens_per_problem,
                None,
                args.subsets,
                rules,
                drawn["confidence"],
            )
    asked = drawn["asked"]
    header = (
        f"ponder tune {args.task}: pool runs {', '.join(drawn['run_ids'])} ({len(every)} "
        f"pools of {args.pool}; {drawn['reused']} reused, {drawn['drawn']} drawn); model "
        f"{model or '(server default)'}; temperatures {', '.join(f'{t:g}' for t in temps)}, "
        f"max_tokens {args.max_tokens}\n"
        f"P(yes) asked about {asked['asked']} samples now ({asked['tokens']} tokens generated, "
        f"{asked['prompt']} prompt tokens computed), {asked['cached']} found stored"
    )
    command = _command(args)
    out.mkdir(parents=True, exist_ok=True)
    written = [save(recipe, out / "recipe.json")] if given is None else []
    text = text_report(result, header, splits)
    (out / "report.txt").write_text(text)
    (out / "report.json").write_text(json.dumps(json_report(result, splits), indent=2) + "\n")
    png = plot_frontier(result, out / "frontier.png", f"ponder tune {args.task}")
    (out / "report.md").write_text(markdown_report(result, command, header, args.md_image, splits))
    (out / "report.html").write_text(html_report(result, command, header, png.read_bytes(), splits))
    written += [out / n for n in ("report.txt", "report.json", "report.md", "report.html")]
    written.append(png)
    print(text, end="")
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _fit(args: argparse.Namespace) -> Any:
    """The fit's margin for noise from ``--fit`` and its options (None: the plain fit),
    after checking the options of the fit."""
    from ponder.evals.tune import Bootstrap

    if args.max_tokens_per_problem is not None and args.max_tokens_per_problem <= 0:
        raise ValueError("--max-tokens-per-problem must be > 0")
    if not 0 < args.dev_fraction < 1:
        raise ValueError(f"--dev-fraction must be in (0, 1), got {args.dev_fraction}")
    if args.split_seeds < 0:
        raise ValueError(f"--split-seeds must be >= 0, got {args.split_seeds}")
    if args.split_seeds and args.recipe:
        raise ValueError("--split-seeds re-fits; with --recipe nothing is fitted")
    if args.fit == "plain":
        return None
    return Bootstrap(args.fit_draws, args.fit_confidence, args.fit_tolerance, args.fit_seed)


def _max_tokens(given: int | None, recipe: Any) -> int:
    """The per-sample cap: ``--max-tokens``, else the recipe's own, else 512. A recipe is
    assessed at the cap it was fitted at: its accuracy and its ``truncated`` signal depend
    on it, so another cap is an error."""
    if given is not None and given < 1:
        raise ValueError(f"--max-tokens must be >= 1, got {given}")
    own = None if recipe is None else recipe.max_tokens
    if given is not None and own is not None and given != own:
        raise ValueError(
            f"the recipe was fitted at --max-tokens {own}; assess it at that cap (drop "
            f"--max-tokens {given}), or edit its 'max_tokens' to assess another"
        )
    return given if given is not None else own if own is not None else 512


def _recipe_temperatures(recipe: Any) -> list[float]:
    """The temperatures a given recipe samples at (none when it names none)."""
    if recipe is None:
        return []
    temps = {recipe.temperature_of(j) for j in range(len(recipe.stages))}
    return sorted(t for t in temps if t is not None)


def _tasks(args: argparse.Namespace) -> list[Any]:
    """The task, or one per ``--levels`` level; their problems checked now."""
    from ponder.tasks import create_task

    options = task_options(args)
    if args.levels:
        if "level" in options:
            raise ValueError("give either --level or --levels")
        tasks = [create_task(args.task, **options, level=level) for level in args.levels]
        if "level" not in tasks[0].options():
            raise ValueError(f"--levels: task {args.task!r} has no level option")
    else:
        tasks = [create_task(args.task, **options)]
    for task in tasks:
        task.problems(args.limit or None, seed=args.task_seed)
    return tasks


def _draw(
    args: argparse.Namespace,
    tasks: list[Any],
    temps: list[float],
    scorers: list[str],
    options: dict[str, Any] | None,
    first: int,
) -> dict[str, Any]:
    """Every missing pool drawn and every missing P(yes) asked, on one engine; the pools
    by temperature (with those of ``--pools-from``), the run ids, the counts, and whether
    every run stored the DeepConf confidences live ``auto`` computes (``confidence``)."""
    from ponder.evals.pool import PoolConfig
    from ponder.evals.store import Store
    from ponder.evals.tune import confidence_settings
    from ponder.evals.tune_signals import ask_pools

    pools: dict[float | None, list[Any]] = {t: [] for t in temps}
    problems: dict[str, Any] = {}
    run_ids, reused, drawn = [], 0, 0
    settings: list[tuple[int, int]] = []
    asked = {"asked": 0, "cached": 0, "tokens": 0, "prompt": 0}
    engine = engine_from_args(args)
    try:
        with Store(args.db) as store:
            for task in tasks:
                mine = {p.id: p for p in task.problems(args.limit or None, seed=args.task_seed)}
                problems.update(mine)
                for t in temps:
                    config = PoolConfig(
                        n=args.pool,
                        max_tokens=args.max_tokens,
                        temperature=t,
                        top_logprobs=args.top_logprobs,
                    )
                    summary = draw_pools(args, task, config, engine, store, scorers, options)
                    if summary.pools_failed:
                        raise ValueError(
                            f"{summary.pools_failed} pools failed (see `ponder report "
                            f"{args.db}`); run the same command again to retry them"
                        )
                    run_ids.append(summary.run_id)
                    settings.append((config.top_logprobs, config.window))
                    reused += summary.pools_already_done
                    drawn += summary.pools_run
                    # only these problems' pools: a run may hold more (an earlier, larger
                    # --limit), and --limit says which problems to tune on
                    pools[t] += [p for p in store.pools(summary.run_id) if p.problem_id in mine]
            for run_id in args.pools_from:
                t, more, setting = _pools_from(store, run_id, problems)
                settings.append(setting)
                pools.setdefault(t, []).extend(more)
                run_ids.append(run_id)
            if first and engine.capabilities.logprobs:
                every = [p for ps in pools.values() for p in ps]
                done = ask_pools(store, every, problems, engine, first, args.concurrency)
                asked = {
                    "asked": done.asked,
                    "cached": done.cached,
                    "tokens": done.usage.tokens_generated,
                    "prompt": done.usage.prompt_tokens_computed,
                }
                if done.asked:
                    pools = {t: _reread(store, ps) for t, ps in pools.items()}
    finally:
        engine.close()
    return {
        "pools": pools,
        "run_ids": run_ids,
        "reused": reused,
        "drawn": drawn,
        "asked": asked,
        "confidence": all(confidence_settings(*s) for s in settings),
    }


def _reread(store: Any, pools: list[Any]) -> list[Any]:
    """The same pools as stored now (with the P(yes) just added)."""
    wanted = {(p.run_id, p.key) for p in pools}
    out = []
    for run_id in dict.fromkeys(p.run_id for p in pools):
        out += [p for p in store.pools(run_id) if (run_id, p.key) in wanted]
    return out


def _pools_from(
    store: Any, run_id: str, problems: dict[str, Any]
) -> tuple[float, list[Any], tuple[int, int]]:
    """Another run's pools, its temperature and (top log-probs, DeepConf group window), and
    its problems added to ``problems``."""
    from ponder.tasks import create_task

    runs = {r["run_id"]: r for r in store.runs()}
    pools = store.pools(run_id)
    if run_id not in runs or not pools:
        raise ValueError(f"--pools-from {run_id}: no pools of that run in the database")
    config = runs[run_id]["config"]
    task = create_task(config["task"], **config.get("task_options", {}))
    limit = runs[run_id]["grid"].get("limit")
    for p in task.problems(limit, seed=config.get("task_seed", 0)):
        problems.setdefault(p.id, p)
    pool = config["pool"]
    setting = (int(pool.get("top_logprobs", 0)), int(pool.get("group_window", 0)))
    return float(pool["temperature"]), pools, setting


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this report (the options that change it)."""
    from ponder.strategies.recipes import load

    parts = ["ponder tune", args.task]
    for key, value in sorted(task_options(args).items()):
        parts.append(f"--task-set {key}={value}")
    if args.levels:
        parts.append("--levels " + ",".join(map(str, args.levels)))
    if args.limit:
        parts.append(f"--limit {args.limit}")
    parts.append(f"--pool {args.pool}")
    if args.seeds != 1:
        parts.append(f"--seeds {args.seeds}")
    temps = (
        args.temperatures
        or _recipe_temperatures(load(args.recipe) if args.recipe else None)
        or [args.temperature]
    )
    parts.append("--temperatures " + ",".join(f"{t:g}" for t in temps))
    parts.append(f"--max-tokens {args.max_tokens}")
    if args.top_logprobs != 20:
        parts.append(f"--top-logprobs {args.top_logprobs}")
    if args.self_eval >= 0:
        parts.append(f"--self-eval {args.self_eval}")
    if args.scorer:
        parts.append(f"--scorer {args.scorer}")
    if args.pool_scorers:
        parts.append(f"--pool-scorers {args.pool_scorers}")
    if args.max_tokens_per_problem is not None:
        parts.append(f"--max-tokens-per-problem {args.max_tokens_per_problem:g}")
    if args.fit == "plain":
        parts.append("--fit plain")
    else:
        defaults = {"confidence": 0.8, "tolerance": 0.0, "draws": 1000, "seed": 0}
        for key, default in defaults.items():
            value = getattr(args, f"fit_{key}")
            if value != default:
                parts.append(f"--fit-{key} {value:g}")
    if args.dev_fraction != 0.5 or args.split_seed:
        parts.append(f"--dev-fraction {args.dev_fraction:g} --split-seed {args.split_seed}")
    if args.split_seeds:
        parts.append(f"--split-seeds {args.split_seeds}")
    if args.rules:
        parts.append(f"--rules {args.rules}")
    if args.recipe:
        parts.append(f"--recipe {args.recipe}")
    parts += [f"--pools-from {r}" for r in args.pools_from]
    if args.model:
        parts.append(f"--model {args.model}")
    return " ".join(parts)


def _about(
    args: argparse.Namespace, model: str | None, result: Any, run_ids: list[str]
) -> dict[str, Any]:
    """Where a fitted recipe came from, and the figures it was fitted to."""
    held = result.held_recipe
    return {
        "fitted_by": "ponder tune",
        "command": _command(args),
        "task": args.task,
        "levels": args.levels,
        "model": model,
        "pool_runs": run_ids,
        "pool": args.pool,
        "temperatures": args.temperatures or [args.temperature],
        "max_tokens": args.max_tokens,
        "objective": result.objective,
        "fit": {"rule": "plain"} if result.fit is None else result.fit.as_dict(),
        "fit_statistic": None if result.fit_statistic is None else round(result.fit_statistic, 4),
        "dev_problems": len(result.dev_ids),
        "dev_accuracy": round(result.chosen.accuracy, 4),
        "dev_tokens_per_problem": round(result.chosen.tokens, 1),
        "best_fixed": result.best_fixed.label,
        "held_problems": len(result.held_ids),
        "held_accuracy": None if held is None else round(held.accuracy, 4),
        "held_wilson": None if held is None else [round(x, 4) for x in held.wilson],
        "held_tokens_per_problem": None if held is None else round(held.tokens, 1),
    }
