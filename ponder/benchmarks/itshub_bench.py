"""``ponder bench its-hub``: ponder's particle filter against its_hub's, judge and all.

The same model, arithmetic problems, particle counts, step delimiter, per-step token cap,
step cap and sampling temperature on both sides, one problem at a time:

* ponder: the ``particle-filter`` strategy with the ``judge`` scorer (the model's P(Yes)
  to "is the solution so far correct?") on the embedded engine, through the eval runner;
  a fresh engine per particle count, so no count is served from another's cache;
* its_hub 1.2.0: ``ParticleFiltering`` with ``StepGeneration`` and its ``LLMJudge`` (a
  0-10 score asked for as JSON, made a process reward by ``itshub_driver``) through its
  ``OpenAICompatibleLanguageModel`` against llama.cpp's ``llama-server --parallel
  PARTICLES --metrics``, started afresh per particle count. The driver runs in the peers'
  venv (``make peers``); its_hub stops a particle at a step containing ``STOP_TOKEN`` (the
  arithmetic task asks every reply to end with it).

Both sides' answers are graded by the arithmetic task. Per system and particle count:
accuracy with a Wilson interval, seconds (the sum over problems of each problem's search
time), tokens generated and prompt tokens computed (ponder: its usage accounting;
its_hub: llama-server's ``/metrics`` counters before and after), and ponder's speed-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ponder.benchmarks._common import model_path, write_json
from ponder.benchmarks._procs import free_port, running
from ponder.benchmarks.engine_bench import find_llama_server, llama_server_command
from ponder.evals.metrics import wilson_interval
from ponder.strategies.particle_filter import ParticleFilterConfig

SYSTEMS = ("ponder", "its-hub")
STRATEGY = "particle-filter"
DELIMITER = ParticleFilterConfig.delimiter  # ponder's default step delimiter
TEMPERATURE = ParticleFilterConfig.temperature  # ponder's and StepGeneration's default
STOP_TOKEN = "The answer is"  # the arithmetic task's instruction ends every reply with it
DRIVER = Path(__file__).with_name("itshub_driver.py")
PROMPT_COUNTER = "llamacpp:prompt_tokens_total"
PREDICTED_COUNTER = "llamacpp:tokens_predicted_total"


def peers_python() -> Path:
    """The Python of the peers' venv (env ``PONDER_PEERS``, default ~/.cache/ponder/peers)."""
    peers = Path(os.environ.get("PONDER_PEERS", Path.home() / ".cache" / "ponder" / "peers"))
    return peers / "bin" / "python"


def check_args(args: argparse.Namespace) -> tuple[list[int], list[str]]:
    """The particle counts and systems to run; ``ValueError`` for anything unusable."""
    try:
        particles = [int(x) for x in args.particles.split(",") if x.strip()]
    except ValueError:
        raise ValueError(
            f"--particles takes a comma list of integers, got {args.particles!r}"
        ) from None
    if not particles or min(particles) < 1:
        raise ValueError(f"--particles needs counts >= 1, got {args.particles!r}")
    systems = [s for s in args.systems.split(",") if s.strip()]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown or not systems:
        raise ValueError(f"--systems takes {', '.join(SYSTEMS)}; got {args.systems!r}")
    for name in ("limit", "max_tokens", "max_steps", "judge_tokens"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return particles, [s for s in SYSTEMS if s in systems]


def parse_metrics(text: str) -> dict[str, float]:
    """The samples of a Prometheus text page, by metric name (label sets summed)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition(" ")
        name = name.split("{", 1)[0]
        values[name] = values.get(name, 0.0) + float(rest.split()[0])
    return values


def counted(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    """llama-server's tokens between two ``/metrics`` readings: generated, and prompt
    tokens computed (its prompt counter skips what a slot's cache already held)."""
    for name in (PROMPT_COUNTER, PREDICTED_COUNTER):
        if name not in after:
            raise RuntimeError(f"llama-server's /metrics has no {name}; was --metrics passed?")
    return {
        "tokens_generated": round(after[PREDICTED_COUNTER] - before.get(PREDICTED_COUNTER, 0)),
        "prompt_tokens_computed": round(after[PROMPT_COUNTER] - before.get(PROMPT_COUNTER, 0)),
    }


def summarize(
    system: str,
    particles: int,
    outcomes: list[dict[str, Any]],
    tokens: dict[str, int],
    judge_fallbacks: int,
) -> dict[str, Any]:
    """One row: accuracy with its 95% Wilson interval, the problems' summed seconds, the
    tokens, and how many judgements gave no score (each then scored as undecided);
    ``outcomes`` has one dict per problem with ``correct`` and ``seconds``."""
    right = sum(bool(o["correct"]) for o in outcomes)
    low, high = wilson_interval(right, len(outcomes))
    return {
        "system": system,
        "particles": particles,
        "problems": len(outcomes),
        "correct": right,
        "accuracy": right / len(outcomes) if outcomes else 0.0,
        "wilson_95": [low, high],
        "seconds": sum(float(o["seconds"]) for o in outcomes),
        **tokens,
        "judge_fallbacks": judge_fallbacks,
        "outcomes": outcomes,
    }


def speedups(rows: list[dict[str, Any]]) -> dict[int, float]:
    """its_hub's seconds over ponder's, per particle count measured on both."""
    seconds = {(r["system"], r["particles"]): r["seconds"] for r in rows}
    return {
        p: seconds[("its-hub", p)] / s
        for (system, p), s in seconds.items()
        if system == "ponder" and ("its-hub", p) in seconds and s > 0
    }


HEADER = (
    "| system | particles | accuracy [95% Wilson] | seconds | s/problem | tokens generated "
    "| prompt tokens computed | judge fallbacks | ponder speed-up |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def format_table(rows: list[dict[str, Any]]) -> str:
    ratio = speedups(rows)
    lines = [HEADER]
    for r in rows:
        low, high = r["wilson_95"]
        up = (
            f"{ratio[r['particles']]:.2f}x"
            if r["system"] == "ponder" and r["particles"] in ratio
            else ""
        )
        lines.append(
            f"| {r['system']} | {r['particles']} | {r['correct']}/{r['problems']} = "
            f"{r['accuracy']:.2f} [{low:.2f}, {high:.2f}] | {r['seconds']:.1f} "
            f"| {r['seconds'] / max(1, r['problems']):.1f} | {r['tokens_generated']:,} "
            f"| {r['prompt_tokens_computed']:,} | {r['judge_fallbacks']} | {up} |"
        )
    return "\n".join(lines)


# ---- ponder ------------------------------------------------------------------------------


def run_ponder(
    args: argparse.Namespace, particles: int, engine_options: dict[str, Any]
) -> dict[str, Any]:
    """ponder's particle filter with the judge over the problems, one at a time."""
    from ponder.api import load_engine
    from ponder.evals.runner import StrategySpec, run_eval
    from ponder.evals.store import Store
    from ponder.scoring import create_scorer
    from ponder.tasks import create_task

    config = {
        "delimiter": DELIMITER,
        "max_step_tokens": args.max_tokens,
        "max_steps": args.max_steps,
        # its_hub has no cap on a whole solution: ponder's is never below the step caps'
        "max_tokens": args.max_steps * args.max_tokens,
        "temperature": TEMPERATURE,
    }
    engine = load_engine(**engine_options)
    judge = create_scorer("judge", engine)
    with tempfile.TemporaryDirectory(prefix="ponder-itshub-") as tmp:
        db = Path(tmp) / "runs.sqlite"
        try:
            summary = run_eval(
                create_task("arithmetic", level=args.level),
                [StrategySpec(STRATEGY, STRATEGY, config)],
                [particles],
                [args.seed],
                args.limit,
                db,
                engine,
                scorer=judge,
                concurrency=1,
                model=args.model,
                progress=sys.stderr,
            )
        finally:
            engine.close()
        if summary.cells_failed:
            raise RuntimeError(
                f"ponder: {summary.cells_failed} problems failed: {summary.failures}"
            )
        with Store(db) as store:
            cells = store.cells(summary.run_id)
    outcomes = [
        {"id": c.problem_id, "answer": c.answer, "correct": c.correct, "seconds": c.seconds}
        for c in cells
    ]
    tokens = {
        "tokens_generated": sum(c.tokens_generated for c in cells),
        "prompt_tokens_computed": sum(c.prompt_tokens_computed for c in cells),
    }
    # judge fallbacks: neither Yes nor No among the judge's top tokens (scored 0.5)
    return summarize("ponder", particles, outcomes, tokens, judge.undecided)


# ---- its_hub on llama-server -------------------------------------------------------------


def peers(args: argparse.Namespace) -> tuple[str, Path]:
    """llama-server and the peers' Python with its_hub; ``ValueError`` naming ``make peers``
    when either is missing."""
    binary = find_llama_server(args.llama_server)
    python = peers_python()
    if binary is None or not Path(binary).exists():
        raise ValueError("llama-server not found: run `make peers` (or pass --llama-server)")
    probe = [str(python), "-c", "import its_hub.core.algorithms.particle_gibbs, aiohttp, backoff"]
    if not python.exists() or subprocess.run(probe, capture_output=True).returncode != 0:
        raise ValueError(
            f"its_hub 1.2.0 is not installed in the peers' venv ({python}): run `make peers`"
        )
    return binary, python


def server_command(
    binary: str, model: Path, port: int, particles: int, args: argparse.Namespace
) -> list[str]:
    """llama-server with one slot per particle, ``--flash-attn`` as asked (``auto``: its own
    default), its token counters on."""
    threads = args.threads or (os.cpu_count() or 1)
    return llama_server_command(
        binary, model, port, particles, args.n_ctx, threads, args.flash_attn, metrics=True
    )


def run_itshub(
    args: argparse.Namespace, particles: int, binary: str, python: Path, model: Path
) -> dict[str, Any]:
    """its_hub's particle filtering with its LLM judge over the problems, one at a time."""
    import httpx

    from ponder.tasks import create_task
    from ponder.types import Candidate

    task = create_task("arithmetic", level=args.level)
    problems = task.problems(args.limit)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    spec = {
        "endpoint": base + "/v1",
        "model": model.stem,
        "particles": particles,
        "delimiter": DELIMITER,
        "stop_token": STOP_TOKEN,
        "max_steps": args.max_steps,
        "step_tokens": args.max_tokens,
        "judge_tokens": args.judge_tokens,
        "judge_format": args.judge_format,
        "temperature": TEMPERATURE,
        "seed": args.seed,
        "problems": [{"id": p.id, "prompt": p.messages[-1]["content"]} for p in problems],
    }
    by_id = {p.id: p for p in problems}
    cmd = server_command(binary, model, port, particles, args)
    with running(cmd, base + "/health"), tempfile.TemporaryFile("w+") as log:
        before = parse_metrics(httpx.get(base + "/metrics", timeout=10).text)
        lines = _drive(python, spec, log)
        after = parse_metrics(httpx.get(base + "/metrics", timeout=10).text)

    async def grade() -> list[bool]:
        # its_hub's chosen text, graded as ponder grades a candidate without an answer
        verdicts = [
            task.grade_candidates(by_id[o["id"]], [Candidate(o["answer"], None, 0)]) for o in lines
        ]
        return [v for [v] in await asyncio.gather(*verdicts)]

    outcomes = [{**o, "correct": v} for o, v in zip(lines, asyncio.run(grade()), strict=True)]
    # judge fallbacks: replies LLMJudge read no score from (scored 5 of 10)
    fallbacks = sum(o["judge_fallbacks"] for o in outcomes)
    return summarize("its-hub", particles, outcomes, counted(before, after), fallbacks)


def _drive(python: Path, spec: dict[str, Any], log: Any) -> list[dict[str, Any]]:
    """Run the driver on ``spec``: its JSON lines, one per problem, with a progress line on
    stderr for each (its own stderr goes to ``log``, shown if it fails)."""
    proc = subprocess.Popen(
        [str(python), str(DRIVER)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(spec))
    proc.stdin.close()
    lines = []
    for line in proc.stdout:
        lines.append(json.loads(line))
        done = sum(o["seconds"] for o in lines)
        print(
            f"its-hub: {len(lines)}/{len(spec['problems'])} problems, {done:.0f} s", file=sys.stderr
        )
    if proc.wait() != 0:
        log.seek(0)
        raise RuntimeError(f"its_hub's driver failed ({proc.returncode}):\n{log.read()[-3000:]}")
    return lines


# ---- orchestration -----------------------------------------------------------------------


def main(args: argparse.Namespace, engine_options: dict[str, Any]) -> int:
    particles, systems = check_args(args)
    model = model_path(args)
    binary, python = peers(args) if "its-hub" in systems else ("", Path())
    rows = []
    for p in particles:
        for system in systems:
            print(f"{system}: {args.limit} problems, {p} particles …", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            if system == "ponder":
                row = run_ponder(args, p, {**engine_options, "model": args.model})
            else:
                row = run_itshub(args, p, binary, python, model)
            row["wall_seconds"] = time.perf_counter() - t0
            rows.append(row)
            print(format_table([row]).splitlines()[-1], file=sys.stderr, flush=True)
    print(format_table(rows))
    result = {"settings": settings(args, particles, systems), "rows": rows}
    result["speedup"] = {str(k): v for k, v in speedups(rows).items()}
    write_json(result, args.out)
    return 0


def settings(args: argparse.Namespace, particles: list[int], systems: list[str]) -> dict[str, Any]:
    keys = (
        "model",
        "limit",
        "level",
        "max_tokens",
        "max_steps",
        "judge_tokens",
        "judge_format",
        "seed",
    )
    return {
        **{k: getattr(args, k) for k in keys},
        "particles": particles,
        "systems": systems,
        "delimiter": DELIMITER,
        "stop_token": STOP_TOKEN,
        "temperature": TEMPERATURE,
        "flash_attn": args.flash_attn,
        "n_ctx": args.n_ctx,
        "threads": args.threads or os.cpu_count(),
    }
