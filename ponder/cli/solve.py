"""``ponder solve QUESTION``: one question, one strategy, the answer and its evidence."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ponder.cli.common import (
    add_engine_arguments,
    add_scorer_arguments,
    engine_from_args,
    scorer_from_args,
)
from ponder.options import parse_pairs
from ponder.strategies import names
from ponder.types import Budget, Result


def add_parsers(sub: Any) -> None:
    v = sub.add_parser("solve", help="answer one question")
    v.add_argument("question")
    v.add_argument("--strategy", default="self-consistency", choices=names(with_aliases=True))
    v.add_argument(
        "--budget", type=int, default=8, help="samples/particles/beams (see `ponder strategies`)"
    )
    v.add_argument("--max-tokens", type=int, default=0, help="per-sample token cap")
    v.add_argument("--set", action="append", metavar="KEY=VALUE", help="strategy setting")
    v.add_argument("--json", action="store_true", help="machine-readable output")
    add_scorer_arguments(v)
    add_engine_arguments(v)
    v.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ponder.api import solve

    config = parse_pairs(args.set, "--set")
    if args.max_tokens:
        config["max_tokens"] = args.max_tokens
    engine = engine_from_args(args, one_problem=True)
    try:
        result = solve(
            args.question,
            args.strategy,
            Budget(n=args.budget),
            engine=engine,
            scorer=scorer_from_args(args, engine),
            **config,
        )
    finally:
        engine.close()
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print_result(result)
    return 0


def print_result(result: Result) -> None:
    print(f"answer: {result.answer}")
    print(f"strategy: {result.strategy}")
    if result.trace.get("reason"):  # auto: the stage it stopped at, and why
        print(f"why: {result.trace['reason']}")
    if result.best is not None:
        print("--- chosen candidate ---")
        print(result.best.text.strip())
    if len(result.candidates) > 1:
        print(f"--- {len(result.candidates)} candidates ---")
        for i, c in enumerate(result.candidates):
            first = " ".join(c.text.split())[:70]
            print(
                f"[{i:2d}] answer={c.answer!s:12.12s} votes={c.votes:<3d} "
                f"tokens={c.tokens:<4d} {first}"
            )
    u = result.usage
    print(
        f"--- usage: {u.tokens_generated} tokens generated, {u.prompt_tokens_computed} prompt "
        f"tokens computed, {u.prompt_tokens_cached} from cache ({u.cache_hit_rate:.0%}), "
        f"{u.seconds:.1f} s"
    )
