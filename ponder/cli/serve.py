"""``ponder serve``: the OpenAI-compatible server and web page (docs/SERVER.md)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ponder import models
from ponder.cli.common import (
    add_engine_arguments,
    add_scorer_arguments,
    engine_from_args,
    scorer_options,
)
from ponder.strategies import names


def add_parsers(sub: Any) -> None:
    sv = sub.add_parser("serve", help="OpenAI-compatible server and web page (docs/SERVER.md)")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--api-key", default="", help="require this bearer key (or env PONDER_API_KEY)")
    sv.add_argument("--strategy", default="self-consistency", choices=names(with_aliases=True))
    sv.add_argument("--budget", type=int, default=4, help="budget of a request that names none")
    sv.add_argument("--max-budget", type=int, default=32, help="largest budget a request may ask")
    sv.add_argument("--max-tokens", type=int, default=1024, help="largest per-sample token cap")
    sv.add_argument("--concurrency", type=int, default=8, help="runs executing at once")
    sv.add_argument("--queue-size", type=int, default=32, help="runs admitted (running+waiting)")
    sv.add_argument(
        "--max-body-bytes", type=int, default=8 << 20, help="largest request body (413 beyond)"
    )
    sv.add_argument("--n-parallel", type=int, default=64, help="engine sequence slots")
    add_engine_arguments(sv)
    add_scorer_arguments(sv)
    sv.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ponder.scoring import scorer_names
    from ponder.server.main import serve
    from ponder.server.settings import ServerSettings

    options = scorer_options(args)
    if args.scorer and args.scorer not in scorer_names():
        raise ValueError(f"unknown scorer {args.scorer!r}; known: {', '.join(scorer_names())}")

    settings = ServerSettings(
        model=args.model or (",".join(args.base_url) if args.base_url else models.DEFAULT_MODEL),
        api_key=args.api_key or os.environ.get("PONDER_API_KEY") or None,
        default_strategy=args.strategy,
        default_budget=min(args.budget, args.max_budget),
        max_budget=args.max_budget,
        max_tokens=args.max_tokens,
        concurrency=args.concurrency,
        queue_size=args.queue_size,
        max_body_bytes=args.max_body_bytes,
        scorer=args.scorer or None,
        scorer_options=tuple(options.items()),
    )
    engine = engine_from_args(args, n_parallel=args.n_parallel)
    serve(settings, host=args.host, port=args.port, engine=engine)
    return 0
