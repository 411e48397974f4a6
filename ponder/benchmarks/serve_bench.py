"""``ponder bench serve``: ponder's server against OptiLLM in front of llama.cpp's server.

The same questions, the same model and threads, one after the other in one run:

(a) ``ponder serve`` answering ``model="ponder/self-consistency@K"``: K samples of one
    request are one engine request (prompt computed once, samples batched with every
    other client's);
(b) OptiLLM's ``self_consistency`` approach as a proxy in front of ``llama-server
    --parallel P``: OptiLLM draws its samples one HTTP call after another.

For 1, 4 and 16 concurrent clients: requests per second, p50/p95 latency, completion
tokens per second. OptiLLM's approach hard-codes 5 samples at temperature 1; the bench
starts OptiLLM through a few-line launcher that sets the sample count to K, runs ponder at
temperature 1 too, and caps both sides at the same ``--max-tokens`` (sent with each
request; llama-server's ``--n-predict`` too). llama-server renders chats with the template
ponder's engine uses (``--peer-chat-template``, checked before the run). Results:
docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ponder import models
from ponder.benchmarks._common import at_least_one, counts
from ponder.benchmarks._procs import free_port, running

OPTILLM_LAUNCHER = """
import sys
import optillm.self_consistency as sc
_init = sc.AdvancedSelfConsistency.__init__
def _init_k(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self.num_samples = {samples}
sc.AdvancedSelfConsistency.__init__ = _init_k
from optillm import main
sys.argv = ["optillm"] + sys.argv[1:]
main()
"""


def counter(url: str, name: str) -> float:
    """A counter from a Prometheus text endpoint (0 when absent)."""
    import httpx

    total = 0.0
    for line in httpx.get(url, timeout=10).text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.split()[-1])
    return total


async def load(
    url: str,
    body: dict[str, Any],
    questions: list[str],
    clients: int,
    requests: int,
    headers: dict[str, str],
) -> dict[str, Any]:
    """``requests`` chat completions from ``clients`` concurrent clients."""
    import httpx

    latencies: list[float] = []
    tokens = 0
    errors: list[str] = []
    todo = list(range(requests))

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal tokens
        while todo:
            i = todo.pop(0)
            q = questions[i % len(questions)]
            payload = {**body, "messages": [{"role": "user", "content": q}]}
            t0 = time.perf_counter()
            try:
                r = await http.post(f"{url}/v1/chat/completions", json=payload, headers=headers)
                r.raise_for_status()
                data = r.json()
                tokens += int((data.get("usage") or {}).get("completion_tokens") or 0)
                latencies.append(time.perf_counter() - t0)
            except (httpx.HTTPError, ValueError) as exc:
                errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")

    t0 = time.perf_counter()
    async with httpx.AsyncClient(timeout=1800) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    wall = time.perf_counter() - t0
    latencies.sort()
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": errors,
        "seconds": wall,
        "rps": len(latencies) / wall,
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p95": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
        if latencies
        else float("nan"),
        "completion_tokens_reported": tokens,
    }


def questions(n: int) -> list[str]:
    from ponder.tasks import create_task

    task = create_task("arithmetic", level=2)
    return [str(p.messages[-1]["content"]) for p in task.problems(n, seed=7)]


def run_side(
    name: str,
    url: str,
    body: dict[str, Any],
    qs: list[str],
    args: argparse.Namespace,
    tokens: tuple[str, str],
) -> list[dict[str, Any]]:
    """Load ``url`` at each client count. ``tokens`` = (metrics URL, counter name) of the
    server that generates: tokens are counted there, not taken from replies."""
    rows = []
    for c in args.clients_list:
        n = max(args.requests_per_client * c, 4)
        print(f"{name}: {c} clients, {n} requests …", file=sys.stderr, flush=True)
        before = counter(*tokens)
        row = asyncio.run(load(url, body, qs, c, n, {"Authorization": "Bearer bench"}))
        row["generated_tokens"] = counter(*tokens) - before
        row["tok_s"] = row["generated_tokens"] / row["seconds"]
        row["side"] = name
        print(f"  {format_row(row)}", file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def format_row(r: dict[str, Any]) -> str:
    return (
        f"| {r['side']} | {r['clients']} | {r['requests']} | {r['rps']:.3f} | {r['p50']:.1f} "
        f"| {r['p95']:.1f} | {r['tok_s']:.1f} | {len(r['errors'])} |"
    )


HEADER = (
    "| server | clients | requests | requests/s | p50 s | p95 s | generated tok/s | errors |\n"
    "|---|---|---|---|---|---|---|---|"
)


def check_args(args: argparse.Namespace) -> list[int]:
    """The client counts; ``ValueError`` naming the option for anything unusable."""
    clients = counts(args.clients, "--clients")
    at_least_one(args, "requests_per_client", "budget", "max_tokens")
    return clients


def main(args: argparse.Namespace) -> int:
    from ponder.benchmarks.engine_bench import (
        PEER_CHAT_TEMPLATE,
        find_llama_server,
        llama_server_command,
        same_prompts,
    )

    args.clients_list = check_args(args)
    model_name = args.model or models.DEFAULT_MODEL
    model = models.resolve(model_name)
    k = args.budget
    threads = args.threads or (os.cpu_count() or 1)
    top = max(args.clients_list)
    max_tokens = args.max_tokens or 512
    qs = questions(max(32, top * args.requests_per_client))
    results: dict[str, Any] = {
        "model": model_name,
        "samples": k,
        "max_tokens": max_tokens,
        "threads": threads,
        "clients": args.clients_list,
        "rows": [],
    }

    # (a) ponder serve
    port = free_port()
    cmd = [sys.executable, "-m", "ponder.cli", "serve", "--model", str(model)]
    cmd += ["--port", str(port), "--max-tokens", str(max_tokens), "--max-budget", str(k)]
    cmd += ["--budget", str(k), "--concurrency", str(top), "--queue-size", str(4 * top)]
    # KV room per sequence as llama-server gets below: top clients x k samples live at once.
    n_ctx = max(args.n_ctx, top * k * (max_tokens + 256))
    cmd += ["--n-ctx", str(n_ctx), "--n-parallel", str(max(64, top * k + 16))]
    results["ponder_n_ctx"] = n_ctx
    with running(cmd, f"http://127.0.0.1:{port}/health"):
        body = {
            "model": f"ponder/self-consistency@{k}",
            "max_tokens": max_tokens,
            "ponder": {"config": {"temperature": 1.0}},  # the openai client's extra_body
        }
        base = f"http://127.0.0.1:{port}"
        metric = (f"{base}/metrics", "ponder_tokens_generated_total")
        results["rows"] += run_side("ponder", base, body, qs, args, metric)

    # (b) OptiLLM self_consistency in front of llama-server
    if "optillm" not in set(args.skip.split(",")):
        binary = find_llama_server(args.llama_server)
        optillm_python = Path(args.optillm_python).expanduser()
        if binary is None or not optillm_python.exists():
            print("llama-server or OptiLLM missing: run `make peers`", file=sys.stderr)
        else:
            lport, oport = free_port(), free_port()
            # chats rendered as ponder's engine renders them (checked once it is up)
            template = args.peer_chat_template or PEER_CHAT_TEMPLATE
            ctx = top * (max_tokens + 256)
            server = llama_server_command(
                binary, model, lport, top, ctx, threads, metrics=True, chat_template=template
            )
            server += ["-n", str(max_tokens)]
            results["peer_chat_template"] = template
            launcher = Path(tempfile.mkstemp(suffix="_optillm.py")[1])
            launcher.write_text(OPTILLM_LAUNCHER.format(samples=k))
            proxy = [str(optillm_python), str(launcher), "--approach", "self_consistency"]
            proxy += ["--base-url", f"http://127.0.0.1:{lport}/v1", "--port", str(oport)]
            env = {**os.environ, "OPENAI_API_KEY": "bench"}
            with (
                running(server, f"http://127.0.0.1:{lport}/health"),
                running(proxy, f"http://127.0.0.1:{oport}/health", env=env),
            ):
                same_prompts(f"http://127.0.0.1:{lport}", model)
                body = {"model": model.name, "max_tokens": max_tokens, "temperature": 1.0}
                metric = (f"http://127.0.0.1:{lport}/metrics", "llamacpp:tokens_predicted_total")
                rows = run_side("optillm", f"http://127.0.0.1:{oport}", body, qs, args, metric)
                results["rows"] += rows

    print(HEADER)
    for r in results["rows"]:
        print(format_row(r))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0
