"""``ponder bench strategies``: what each strategy costs on the same problems.

Every strategy runs at one budget over the same arithmetic problems, each in a fresh
engine of its own (so no strategy is served from another's cache), through the resumable
eval runner. Per strategy: accuracy, tokens generated, prompt tokens computed and served
from the cache (engine and scorer calls together), engine calls and wall seconds. The
question it answers: do search strategies, which re-send their growing partial solutions
every step, get those prompts from the prefix cache?
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ponder import models
from ponder.benchmarks._common import write_json
from ponder.strategies import names


def measure(args: argparse.Namespace, engine_options: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per strategy; ``engine_options`` are ``load_engine``'s keyword arguments."""
    from ponder.api import load_engine
    from ponder.evals.runner import StrategySpec, run_eval
    from ponder.evals.store import Store
    from ponder.scoring import create_scorer
    from ponder.tasks import create_task

    wanted = [s for s in args.strategies.split(",") if s] if args.strategies else names()
    task = create_task("arithmetic", level=args.level)
    db = args.db or str(Path(tempfile.mkdtemp(prefix="ponder-strategies-")) / "runs.sqlite")
    rows = []
    for name in wanted:
        config: dict[str, Any] = {"max_tokens": args.max_tokens}
        engine = load_engine(**engine_options)
        try:
            scorer = create_scorer(args.scorer, engine) if args.scorer else None
            t0 = time.perf_counter()
            summary = run_eval(
                task,
                [StrategySpec(name, name, config)],
                [args.budget],
                1,
                args.limit,
                db,
                engine,
                scorer=scorer,
                concurrency=args.concurrency,
                model=args.model,
                progress=False,
            )
            wall = time.perf_counter() - t0
        finally:
            engine.close()
        with Store(db) as store:
            cells = store.cells(summary.run_id)
        computed = sum(c.prompt_tokens_computed for c in cells)
        cached = sum(c.prompt_tokens_cached for c in cells)
        row = {
            "strategy": name,
            "budget": args.budget,
            "problems": len(cells),
            "failed": summary.cells_failed,
            "accuracy": sum(c.correct for c in cells) / len(cells) if cells else 0.0,
            "tokens_generated": sum(c.tokens_generated for c in cells),
            "prompt_tokens_computed": computed,
            "prompt_tokens_cached": cached,
            "cache_share": cached / (computed + cached) if computed + cached else 0.0,
            "engine_calls": sum(c.engine_calls for c in cells),
            # wall seconds of this invocation; when some cells came from an earlier,
            # interrupted run they cover only the rest, and the row says so
            "seconds": wall,
            "cells_resumed": summary.cells_already_done,
        }
        rows.append(row)
        print(format_row(row), file=sys.stderr, flush=True)
    return rows


HEADER = (
    "| strategy | acc | tokens generated | prompt computed | prompt from cache | cache share "
    "| engine calls | seconds |\n|---|---|---|---|---|---|---|---|"
)


def format_row(r: dict[str, Any]) -> str:
    return (
        f"| {r['strategy']} | {r['accuracy']:.2f} | {r['tokens_generated']:,} "
        f"| {r['prompt_tokens_computed']:,} | {r['prompt_tokens_cached']:,} "
        f"| {r['cache_share']:.0%} | {r['engine_calls']:,} | {_seconds(r)} |"
    )


def _seconds(r: dict[str, Any]) -> str:
    done = r.get("cells_resumed", 0)
    if not done:
        return f"{r['seconds']:.0f}"
    return f"{r['seconds']:.0f} for {r['problems'] - done} (resumed: {done} done before)"


def main(args: argparse.Namespace, engine_options: dict[str, Any]) -> int:
    args.model = args.model or models.DEFAULT_MODEL
    unknown = [s for s in (args.strategies or "").split(",") if s and s not in names(True)]
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; known: {', '.join(names())}")
    rows = measure(args, {**engine_options, "model": args.model})
    print(HEADER)
    for r in rows:
        print(format_row(r))
    write_json({"settings": _settings(args), "rows": rows}, args.out)
    return 1 if any(r["failed"] for r in rows) else 0


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    keys = (
        "model",
        "budget",
        "limit",
        "level",
        "max_tokens",
        "scorer",
        "concurrency",
        "flash_attn",
    )
    return {k: getattr(args, k) for k in keys}
