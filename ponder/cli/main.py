"""``ponder``: the parser assembled from one module per command, and the error boundary."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ponder import models
from ponder.cli import bench, catalog, evaluate, report, results, serve, solve, tune
from ponder.engines.base import EngineError
from ponder.scoring import ScorerError

COMMANDS = (catalog, solve, serve, evaluate, tune, bench, report, results)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ponder",
        description="Inference-time scaling methods on a batching, prefix-sharing engine.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parsers(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = bench.legacy_task_spelling(argv)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (models.ModelError, EngineError, ScorerError, ValueError) as exc:
        print(f"ponder: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
