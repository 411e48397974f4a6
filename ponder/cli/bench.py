"""``ponder bench engine|serve|strategies|attention|its-hub``: speed, side by side with peers
(docs/BENCHMARKS.md). Each benchmark takes only its own options.

Evaluating a task is ``ponder eval TASK``; the older spelling ``ponder bench TASK`` still
works and says so.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ponder.cli.common import add_command_group, add_engine_arguments, engine_options

SUITES = ("engine", "serve", "strategies", "attention", "its-hub")
_PEER = "path to llama.cpp's llama-server (default: the peers' venv, `make peers`)"
_TEMPLATE = (
    "llama.cpp chat template llama-server renders chats with (default chatml: the prompt "
    "ponder's engine renders for the bundled models; checked before the run)"
)


def add_parsers(sub: Any) -> None:
    suites = add_command_group(
        sub,
        "bench",
        "benchmark the engine, server or strategies against peers (docs/BENCHMARKS.md)",
        __doc__,
        "suite",
        "SUITE",
    )

    e = suites.add_parser("engine", help="tokens/s: sampling and search vs llama-server")
    e.add_argument("--ns", default="1,4,16,32", help="sample counts for the throughput test")
    e.add_argument("--tokens", type=int, default=128, help="tokens per sample")
    e.add_argument("--llama-server", default="", help=_PEER)
    e.add_argument("--skip", default="", help="comma list of: sequential,server,search")
    e.add_argument(
        "--search-rounds",
        type=int,
        default=8,
        help="rounds of the search workload (16 sequences, 32 tokens a round)",
    )
    _common(e, _engine)

    s = suites.add_parser("serve", help="requests/s: ponder serve vs OptiLLM + llama-server")
    s.add_argument("--clients", default="1,4,16", help="concurrent clients")
    s.add_argument("--requests-per-client", type=int, default=2, help="load per client")
    s.add_argument("--budget", "--budgets", type=int, default=4, help="samples per request")
    s.add_argument("--max-tokens", type=int, default=512, help="per-sample token cap")
    s.add_argument("--llama-server", default="", help=_PEER)
    s.add_argument("--peer-chat-template", default="", help=_TEMPLATE)
    s.add_argument("--skip", default="", help="comma list of: optillm")
    s.add_argument(
        "--optillm-python",
        default="~/.cache/ponder/optillm/bin/python",
        help="the Python of a venv with optillm (`make peers`)",
    )
    _common(s, _serve)

    t = suites.add_parser("strategies", help="what each strategy costs on the same problems")
    t.add_argument("--strategies", default="", help="comma list (default: all)")
    t.add_argument("--budget", "--budgets", type=int, default=8, help="the budget of every cell")
    t.add_argument("--limit", type=int, default=20, help="arithmetic problems")
    t.add_argument("--level", type=int, default=2, help="arithmetic difficulty 1-5")
    t.add_argument("--max-tokens", type=int, default=256, help="per-sample token cap")
    t.add_argument("--scorer", default="", help="scorer for the strategies that need one")
    t.add_argument("--concurrency", type=int, default=8, help="problems in flight")
    t.add_argument("--db", default="", help="results database (resumes from it)")
    _common(t, _strategies)

    a = suites.add_parser("attention", help="one decoding step's cost by KV layout")
    a.add_argument("--layouts", default="", help="comma list of KV layouts (default: all)")
    _common(a, _attention)

    h = suites.add_parser(
        "its-hub", help="particle filtering with a judge: ponder vs its_hub on llama-server"
    )
    h.add_argument("--particles", default="4,8", help="comma list of particle counts")
    h.add_argument("--limit", type=int, default=40, help="arithmetic problems")
    h.add_argument("--level", type=int, default=2, help="arithmetic difficulty 1-5")
    h.add_argument("--max-tokens", type=int, default=256, help="per-step token cap (both)")
    h.add_argument("--max-steps", type=int, default=40, help="steps per solution (both)")
    h.add_argument(
        "--judge-tokens", type=int, default=32, help="its_hub judge reply cap (score comes first)"
    )
    h.add_argument(
        "--judge-format",
        default="schema",
        choices=["schema", "object", "none"],
        help="its_hub judge's response_format: its JSON schema (its default), any JSON "
        "object, or none (the prompt alone)",
    )
    h.add_argument(
        "--judge-inline",
        action="store_true",
        help="ponder's judge asks in each particle's own conversation (the judge's inline=true): "
        "its cache holds the particle, so a judgement computes only the question",
    )
    h.add_argument(
        "--no-finish-on",
        dest="finish_on",
        action="store_false",
        help="ponder's particles go on to the end of the turn instead of ending, as its_hub's "
        "do, at the step that says 'The answer is' (the comparisons before stop 33)",
    )
    h.add_argument(
        "--peer-sampling",
        choices=["ponder", "server"],
        default="ponder",
        help="its_hub's requests sample as ponder does (temperature alone: no top-k, top-p or "
        "min-p, vLLM's defaults too), or with llama-server's own defaults for what its_hub "
        "does not send (top-k 40, top-p 0.95, min-p 0.05; the comparisons before stop 33)",
    )
    h.add_argument("--seed", type=int, default=0, help="ponder's and its_hub's resampling seed")
    h.add_argument(
        "--its-hub-timeout",
        type=float,
        default=0.0,
        help="seconds its_hub may spend on one problem; one that runs longer is stopped, "
        "counted wrong and at this many seconds, and named in the table (0: no limit)",
    )
    h.add_argument("--systems", default="ponder,its-hub", help="comma list of: ponder,its-hub")
    h.add_argument(
        "--start",
        type=int,
        default=0,
        help="run problems START+1..limit only (a part of a comparison, in a later sitting)",
    )
    h.add_argument("--llama-server", default="", help=_PEER)
    h.add_argument("--peer-chat-template", default="", help=_TEMPLATE)
    h.add_argument(
        "--rows",
        default="",
        help="JSON-lines ledger: each problem's outcome is appended as it finishes, and a "
        "run with the same settings does only the problems it lacks (default: --out's "
        "name with .rows.jsonl; none without --out)",
    )
    _common(h, _itshub)
    h.set_defaults(flash_attn="on")  # both systems alike; `auto`: each its own default


def _common(p: argparse.ArgumentParser, func: Any) -> None:
    p.add_argument("--out", default="", help="write the results as JSON here")
    add_engine_arguments(p, embedded_only=True)
    p.set_defaults(func=func)


def _engine(args: argparse.Namespace) -> int:
    from ponder.benchmarks import engine_bench

    return engine_bench.main(args)


def _serve(args: argparse.Namespace) -> int:
    from ponder.benchmarks import serve_bench

    return serve_bench.main(args)


def _strategies(args: argparse.Namespace) -> int:
    from ponder.benchmarks import strategy_bench

    return strategy_bench.main(args, engine_options(args))


def _attention(args: argparse.Namespace) -> int:
    from ponder.benchmarks import attention_bench

    return attention_bench.main(args)


def _itshub(args: argparse.Namespace) -> int:
    from ponder.benchmarks import itshub_bench

    return itshub_bench.main(args, engine_options(args))


_RENAMED = {"--file": "--path"}


def legacy_task_spelling(argv: list[str]) -> list[str]:
    """``ponder bench TASK …`` (before ``ponder eval``) → ``ponder eval TASK …``, with a
    note on stderr; any other command line is returned as it is."""
    from ponder.tasks import task_names

    if len(argv) < 2 or argv[0] != "bench" or argv[1] not in task_names():
        return argv
    print(
        f"ponder: note: `ponder bench {argv[1]}` is now `ponder eval {argv[1]}` "
        "(the old spelling will be removed)",
        file=sys.stderr,
    )
    rest = [_RENAMED.get(a, a) for a in argv[2:]]
    rest = [
        _RENAMED[a.split("=", 1)[0]] + "=" + a.split("=", 1)[1]
        if "=" in a and a.split("=", 1)[0] in _RENAMED
        else a
        for a in rest
    ]
    return ["eval", argv[1], *rest]
