"""``ponder models|strategies|scorers|tasks``: what there is to choose from."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ponder import models
from ponder.scoring import describe_scorers
from ponder.strategies import describe
from ponder.tasks import describe_tasks


def add_parsers(sub: Any) -> None:
    m = sub.add_parser("models", help="list, pull or locate models")
    m.add_argument("action", choices=["list", "pull", "path"])
    m.add_argument("name", nargs="?")
    m.set_defaults(func=_models)
    sub.add_parser("strategies", help="list the strategies").set_defaults(func=_strategies)
    sub.add_parser("scorers", help="list the scorers").set_defaults(func=_scorers)
    sub.add_parser("tasks", help="list the tasks `ponder eval` runs").set_defaults(func=_tasks)


def _models(args: argparse.Namespace) -> int:
    if args.action == "list":
        for spec in models.REGISTRY.values():
            path = models.model_path(spec.name)
            state = "pulled" if path.is_file() else "not pulled"
            default = " (default)" if spec.name == models.DEFAULT_MODEL else ""
            size = f"{spec.size / 2**20:7.1f} MiB"
            print(f"{spec.name:32s} {size}  {state:10s} {spec.description}{default}")
        return 0
    if not args.name:
        raise ValueError(f"ponder models {args.action}: give a model name")
    if args.action == "pull":
        print(f"pulling {args.name} …", file=sys.stderr)
        print(models.pull(args.name, progress=True))
    else:
        print(models.resolve(args.name))
    return 0


def _strategies(args: argparse.Namespace) -> int:
    for name, summary, budget in describe():
        print(f"{name:20s} {summary}  [budget: {budget}]")
    return 0


def _scorers(args: argparse.Namespace) -> int:
    for name, summary in describe_scorers():
        print(f"{name:20s} {summary}")
    return 0


def _tasks(args: argparse.Namespace) -> int:
    for name, summary in describe_tasks():
        print(f"{name:20s} {summary}")
    return 0
