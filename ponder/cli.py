"""The ``ponder`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from ponder import models
from ponder.engines.base import EngineError
from ponder.scoring import describe_scorers, scorer_names
from ponder.strategies import describe, names
from ponder.types import Budget, Result


def _cmd_models(args: argparse.Namespace) -> int:
    if args.action == "list":
        for spec in models.REGISTRY.values():
            path = models.model_path(spec.name)
            state = "pulled" if path.is_file() else "not pulled"
            default = " (default)" if spec.name == models.DEFAULT_MODEL else ""
            size = f"{spec.size / 2**20:7.1f} MiB"
            print(f"{spec.name:32s} {size}  {state:10s} {spec.description}{default}")
        return 0
    if not args.name:
        raise SystemExit(f"ponder models {args.action}: give a model name")
    if args.action == "pull":
        print(f"pulling {args.name} …", file=sys.stderr)
        print(models.pull(args.name, progress=True))
    else:
        print(models.resolve(args.name))
    return 0


def _cmd_strategies(args: argparse.Namespace) -> int:
    for name, summary, budget in describe():
        print(f"{name:20s} {summary}  [budget: {budget}]")
    return 0


def _cmd_scorers(args: argparse.Namespace) -> int:
    for name, summary in describe_scorers():
        print(f"{name:20s} {summary}")
    return 0


def _print_result(result: Result) -> None:
    print(f"answer: {result.answer}")
    print(f"strategy: {result.strategy}")
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


def add_engine_arguments(p: argparse.ArgumentParser) -> None:
    """The options that choose and configure an engine (see docs/ENGINES.md)."""
    p.add_argument("--engine", default="llamacpp", choices=["llamacpp", "openai"])
    p.add_argument(
        "--model",
        default=None,
        help=f"llamacpp: registry name or GGUF path (default {models.DEFAULT_MODEL}); "
        "openai: the served model name (default: the server's first)",
    )
    p.add_argument("--n-ctx", type=int, default=16384, help="llamacpp: KV cache size")
    p.add_argument(
        "--flash-attn",
        default="auto",
        choices=["auto", "on", "off"],
        help="llamacpp: flash attention. on: exact (outputs independent of batching and "
        "caching), faster with many problems at once; off: faster for one problem's long "
        "shared prefixes on a CPU; auto: off for `solve` on a CPU-only build, else on",
    )
    p.add_argument(
        "--base-url",
        action="append",
        default=[],
        metavar="URL",
        help="openai: server root, e.g. http://host:8000 (repeat to load-balance)",
    )
    p.add_argument(
        "--engine-api-key",
        default=None,
        help="openai: bearer token for the engine's server (or env PONDER_ENGINE_API_KEY)",
    )
    p.add_argument(
        "--chat-template",
        default=None,
        help="openai: GGUF path, model name or Jinja source to render chat prompts locally",
    )


def engine_options(
    args: argparse.Namespace, one_problem: bool = False, **llamacpp_options: Any
) -> dict[str, Any]:
    """The ``load_engine`` keyword arguments, ``model`` among them, that the
    ``add_engine_arguments`` options describe. ``one_problem``: the engine will work on
    one problem at a time (``solve``), which sets what ``--flash-attn auto`` means."""
    import os

    if args.engine == "openai":
        if not args.base_url:
            raise ValueError("--engine openai needs --base-url URL")
        return {
            "model": args.model,
            "engine": "openai",
            "base_url": list(args.base_url),
            "api_key": args.engine_api_key or os.environ.get("PONDER_ENGINE_API_KEY") or None,
            "chat_template": args.chat_template,
        }
    if args.base_url:
        raise ValueError("--base-url needs --engine openai")
    options: dict[str, Any] = {"model": args.model, "n_ctx": args.n_ctx}
    from ponder.engines.llamacpp.native import flash_attn_setting

    flash = flash_attn_setting(getattr(args, "flash_attn", "auto"), one_problem)
    if flash is not None:
        options["flash_attn"] = flash
    return {**options, **llamacpp_options}


def engine_from_args(args: argparse.Namespace, load: Any, **llamacpp_options: Any) -> Any:
    """The engine that ``add_engine_arguments`` options describe, built with ``load``."""
    options = engine_options(args, **llamacpp_options)
    return load(options.pop("model"), **options)


def parse_pairs(items: Sequence[str] | None, what: str) -> dict[str, Any]:
    """``KEY=VALUE`` options; a value is read as JSON when it parses (numbers, booleans,
    lists), else kept as text."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{what} takes KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


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


def _cmd_solve(args: argparse.Namespace) -> int:
    from ponder.api import load_engine, solve

    config = parse_pairs(args.set, "--set")
    if args.max_tokens:
        config["max_tokens"] = args.max_tokens
    engine = engine_from_args(args, load_engine, one_problem=True)
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
        _print_result(result)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import os

    from ponder.api import load_engine
    from ponder.server.main import serve
    from ponder.server.settings import ServerSettings

    settings = ServerSettings(
        model=args.model or (",".join(args.base_url) if args.base_url else models.DEFAULT_MODEL),
        api_key=args.api_key or os.environ.get("PONDER_API_KEY") or None,
        default_strategy=args.strategy,
        default_budget=min(args.budget, args.max_budget),
        max_budget=args.max_budget,
        max_tokens=args.max_tokens,
        concurrency=args.concurrency,
        queue_size=args.queue_size,
    )
    engine = engine_from_args(args, load_engine, n_parallel=args.n_parallel)
    serve(settings, host=args.host, port=args.port, engine=engine)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.suite == "serve":
        from ponder.benchmarks import serve_bench

        return serve_bench.main(args)
    if args.suite == "attention":
        from ponder.benchmarks import attention_bench

        return attention_bench.main(args)
    if args.suite == "strategies":
        from ponder.benchmarks import strategy_bench

        return strategy_bench.main(args)
    if args.suite != "engine":
        from ponder.evals.runner import bench_main

        return bench_main(args)
    from ponder.benchmarks import engine_bench

    return engine_bench.main(args)


def _cmd_report(args: argparse.Namespace) -> int:
    from ponder.evals.report import report_main

    return report_main(args)


def _cmd_verifier_report(args: argparse.Namespace) -> int:
    from ponder.scoring.quality import format_report, load_records, verifier_report

    try:
        records = load_records(args.file)
    except OSError as exc:
        raise ValueError(f"cannot read {args.file}: {exc.strerror}") from None
    report = verifier_report(records, threshold=args.threshold, epsilon=args.epsilon)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ponder", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("models", help="list, pull or locate models")
    m.add_argument("action", choices=["list", "pull", "path"])
    m.add_argument("name", nargs="?")
    m.set_defaults(func=_cmd_models)

    s = sub.add_parser("strategies", help="list the strategies")
    s.set_defaults(func=_cmd_strategies)

    sc = sub.add_parser("scorers", help="list the scorers")
    sc.set_defaults(func=_cmd_scorers)

    v = sub.add_parser("solve", help="answer one question")
    v.add_argument("question")
    v.add_argument("--strategy", default="self-consistency", choices=names(with_aliases=True))
    v.add_argument("--scorer", default="", help=f"one of: {', '.join(scorer_names())}")
    v.add_argument(
        "--scorer-set", action="append", metavar="KEY=VALUE", help="scorer option (repeatable)"
    )
    v.add_argument(
        "--budget", type=int, default=8, help="samples/particles/beams (see `ponder strategies`)"
    )
    add_engine_arguments(v)
    v.add_argument("--max-tokens", type=int, default=0)
    v.add_argument("--set", action="append", metavar="KEY=VALUE", help="strategy config field")
    v.add_argument("--json", action="store_true", help="machine-readable output")
    v.set_defaults(func=_cmd_solve)

    sv = sub.add_parser("serve", help="OpenAI-compatible server and web page (docs/SERVER.md)")
    add_engine_arguments(sv)
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--api-key", default="", help="require this bearer key (or env PONDER_API_KEY)")
    sv.add_argument("--strategy", default="self-consistency", choices=names(with_aliases=True))
    sv.add_argument("--budget", type=int, default=4, help="budget of a request that names none")
    sv.add_argument("--max-budget", type=int, default=32, help="largest budget a request may ask")
    sv.add_argument("--max-tokens", type=int, default=1024, help="largest per-sample token cap")
    sv.add_argument("--concurrency", type=int, default=8, help="runs executing at once")
    sv.add_argument("--queue-size", type=int, default=32, help="runs admitted (running+waiting)")
    sv.add_argument("--n-parallel", type=int, default=64, help="engine sequence slots")
    sv.set_defaults(func=_cmd_serve)

    from ponder.evals.runner import add_bench_arguments
    from ponder.tasks import task_names

    b = sub.add_parser("bench", help="evaluate a task (docs/EVALS.md) or benchmark the engine")
    tasks = ", ".join(task_names())
    b.add_argument(
        "suite",
        help=(
            "engine, strategies, serve or attention (docs/BENCHMARKS.md), or a task to "
            f"evaluate: {tasks}"
        ),
    )
    add_engine_arguments(b)
    b.add_argument("--ns", default="1,4,16,32", help="sample counts for the throughput test")
    b.add_argument("--tokens", type=int, default=128)
    b.add_argument("--threads", type=int, default=0, help="0 = all cores")
    b.add_argument("--llama-server", default="", help="path to llama.cpp's llama-server binary")
    b.add_argument("--skip", default="", help="comma list of: sequential,server,search")
    b.add_argument("--out", default="", help="write the results as JSON here")
    b.add_argument("--layouts", default="", help="attention: comma list of KV layouts (all)")
    b.add_argument("--clients", default="1,4,16", help="serve: concurrent clients")
    b.add_argument("--requests-per-client", type=int, default=2, help="serve: load per client")
    b.add_argument(
        "--optillm-python",
        default="~/.cache/ponder/optillm/bin/python",
        help="serve: the Python of a venv with optillm (`make peers`)",
    )
    add_bench_arguments(b)
    b.set_defaults(func=_cmd_bench)

    r = sub.add_parser("report", help="tables, JSON or an HTML page from a results database")
    r.add_argument("db", help="results database written by `ponder bench TASK`")
    r.add_argument("-o", "--output", default="", help="write a self-contained HTML page here")
    r.add_argument("--json", action="store_true", help="metrics as JSON")
    r.set_defaults(func=_cmd_report)

    vr = sub.add_parser(
        "verifier-report",
        help="false positives/negatives, AUROC and the resampling ceiling of a verifier",
    )
    vr.add_argument("file", help='JSONL lines {"score": float, "correct": bool, "problem": id?}')
    vr.add_argument("--threshold", type=float, default=0.5, help="accept when score >= this")
    vr.add_argument(
        "--epsilon", type=float, default=0.01, help="a draw gaining less than this stops helping"
    )
    vr.add_argument("--json", action="store_true", help="machine-readable output")
    vr.set_defaults(func=_cmd_verifier_report)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (models.ModelError, EngineError, ValueError) as exc:
        print(f"ponder: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
