"""What several commands share: the engine and scorer option groups and their readers."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ponder import models
from ponder.options import parse_pairs
from ponder.scoring import scorer_names


def add_engine_arguments(p: argparse.ArgumentParser, embedded_only: bool = False) -> None:
    """The options that choose and configure an engine (see docs/ENGINES.md).
    ``embedded_only``: the command measures the embedded engine, so only its options."""
    g = p.add_argument_group("engine")
    if not embedded_only:
        g.add_argument("--engine", default="llamacpp", choices=["llamacpp", "openai"])
    g.add_argument(
        "--model",
        default=None,
        help=f"llamacpp: registry name or GGUF path (default {models.DEFAULT_MODEL})"
        + ("" if embedded_only else "; openai: the served model name (default: the server's)"),
    )
    g.add_argument("--n-ctx", type=int, default=16384, help="llamacpp: KV cache size")
    g.add_argument(
        "--flash-attn",
        default="auto",
        choices=["auto", "on", "off"],
        help="llamacpp: flash attention. on: exact (outputs independent of batching and "
        "caching), faster with many problems at once; off: faster for one problem's long "
        "shared prefixes on a CPU; auto: off for `solve` and `bench engine` (one problem) "
        "on a CPU-only build, else on",
    )
    g.add_argument("--threads", type=int, default=0, help="llamacpp: CPU threads (0: all cores)")
    if embedded_only:
        return
    g.add_argument(
        "--base-url",
        action="append",
        default=[],
        metavar="URL",
        help="openai: server root, e.g. http://host:8000 (repeat to load-balance)",
    )
    g.add_argument(
        "--engine-api-key",
        default=None,
        help="openai: bearer token for the engine's server (or env PONDER_ENGINE_API_KEY)",
    )
    g.add_argument(
        "--chat-template",
        default=None,
        help="how chat messages become the prompt. llamacpp: jinja (the model's own Jinja "
        "template, with its default system message) or Jinja source, a GGUF path or a model "
        "name (default: llama.cpp's built-in template); openai: GGUF path, model name or "
        "Jinja source to render chat prompts locally",
    )


def engine_options(
    args: argparse.Namespace, one_problem: bool = False, **llamacpp_options: Any
) -> dict[str, Any]:
    """The ``load_engine`` keyword arguments, ``model`` among them, that the
    ``add_engine_arguments`` options describe. ``one_problem``: the engine will work on
    one problem at a time (``solve``), which sets what ``--flash-attn auto`` means."""
    engine = getattr(args, "engine", "llamacpp")
    base_url = getattr(args, "base_url", [])
    if engine == "openai":
        if not base_url:
            raise ValueError("--engine openai needs --base-url URL")
        return {
            "model": args.model,
            "engine": "openai",
            "base_url": list(base_url),
            "api_key": args.engine_api_key or os.environ.get("PONDER_ENGINE_API_KEY") or None,
            "chat_template": args.chat_template,
        }
    if base_url:
        raise ValueError("--base-url needs --engine openai")
    options: dict[str, Any] = {"model": args.model, "n_ctx": args.n_ctx}
    if getattr(args, "chat_template", None) is not None:
        options["chat_template"] = args.chat_template
    if getattr(args, "threads", 0):
        options["n_threads"] = args.threads
    from ponder.engines.llamacpp.native import flash_attn_setting

    flash = flash_attn_setting(getattr(args, "flash_attn", "auto"), one_problem)
    if flash is not None:
        options["flash_attn"] = flash
    return {**options, **llamacpp_options}


def engine_from_args(args: argparse.Namespace, **llamacpp_options: Any) -> Any:
    """The engine that ``add_engine_arguments`` options describe."""
    from ponder.api import load_engine

    options = engine_options(args, **llamacpp_options)
    return load_engine(options.pop("model"), **options)


def add_scorer_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scorer")
    g.add_argument("--scorer", default="", help=f"one of: {', '.join(scorer_names())}")
    g.add_argument(
        "--scorer-set", action="append", metavar="KEY=VALUE", help="scorer option (repeatable)"
    )


def scorer_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--scorer-set`` options (an error without ``--scorer``)."""
    options = parse_pairs(getattr(args, "scorer_set", None), "--scorer-set")
    if options and not args.scorer:
        raise ValueError("--scorer-set needs --scorer NAME")
    return options


def scorer_from_args(args: argparse.Namespace, engine: Any) -> Any:
    """The scorer named by ``--scorer`` with its ``--scorer-set`` options, or None."""
    from ponder.scoring import create_scorer

    options = scorer_options(args)
    if not args.scorer:
        return None
    try:
        return create_scorer(args.scorer, engine, **options)
    except TypeError as exc:
        raise ValueError(f"scorer {args.scorer!r}: {exc}") from None


def ints(text: str, what: str) -> list[int]:
    """A comma list of integers, e.g. ``--budgets 1,4,16``."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{what} must be a comma list of integers, got {text!r}") from None
    if not values:
        raise ValueError(f"give at least one value for {what}")
    return values


def add_command_group(
    sub: Any, command: str, help_text: str, description: str | None, dest: str, metavar: str
) -> Any:
    """A command whose first argument picks one of its own subcommands (``ponder bench
    SUITE``, ``ponder results ACTION``): its parser, with ``description`` shown as written,
    and the subparsers that hold the subcommands (one required, stored in ``dest``)."""
    p = sub.add_parser(
        command,
        help=help_text,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return p.add_subparsers(dest=dest, required=True, metavar=metavar)
