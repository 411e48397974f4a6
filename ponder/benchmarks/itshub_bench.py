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
  arithmetic task asks every reply to end with it), and so does ponder (the search's
  ``finish_on``; before stop 33 ponder's particles went on to the end of the turn,
  ``--no-finish-on``). llama-server renders chats with the
  llama.cpp template ponder's engine uses (``--peer-chat-template``, checked against the
  engine's rendering before the first problem), so both systems answer the same prompts.

Both sides' answers are graded by the arithmetic task. Per system and particle count:
accuracy with a Wilson interval, seconds (the sum over problems of each problem's search
time), tokens generated and prompt tokens computed (ponder: its usage accounting;
its_hub: llama-server's ``/metrics`` counters before and after each problem), and
ponder's speed-up.

Each problem's outcome is appended to a JSON-lines ledger as it finishes (``--rows``, by
default next to ``--out``), whose first line holds the settings; a run started again with
the same settings runs only the problems the ledger lacks, so a long comparison can be
run in parts and its data committed as it lands (``--start K`` runs problems K+1..limit
only, for a part in a later sitting).
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
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from ponder.benchmarks._common import at_least_one, counts, model_path, write_json
from ponder.benchmarks._procs import free_port, running
from ponder.benchmarks.engine_bench import (
    PEER_CHAT_TEMPLATE,
    find_llama_server,
    llama_server_command,
    same_prompts,
)
from ponder.evals.metrics import wilson_interval
from ponder.strategies.particle_filter import ParticleFilterConfig
from ponder.tasks.base import Task

SYSTEMS = ("ponder", "its-hub")
STRATEGY = "particle-filter"
DELIMITER = ParticleFilterConfig.delimiter  # ponder's default step delimiter
TEMPERATURE = ParticleFilterConfig.temperature  # ponder's and StepGeneration's default
PLAIN_SAMPLING = {
    "top_k": ParticleFilterConfig.top_k,
    "top_p": ParticleFilterConfig.top_p,
    "min_p": ParticleFilterConfig.min_p,
}
"""ponder's sampling besides the temperature (none of top-k, top-p, min-p: vLLM's defaults
too), sent to llama-server with its_hub's requests unless ``--peer-sampling server``."""
STOP_TOKEN = "The answer is"  # the arithmetic task's instruction ends every reply with it
DRIVER = Path(__file__).with_name("itshub_driver.py")
PROMPT_COUNTER = "llamacpp:prompt_tokens_total"
PREDICTED_COUNTER = "llamacpp:tokens_predicted_total"
BUSY_GAUGE = "llamacpp:requests_processing"


def peers_python() -> Path:
    """The Python of the peers' venv (env ``PONDER_PEERS``, default ~/.cache/ponder/peers)."""
    peers = Path(os.environ.get("PONDER_PEERS", Path.home() / ".cache" / "ponder" / "peers"))
    return peers / "bin" / "python"


def check_args(args: argparse.Namespace) -> tuple[list[int], list[str]]:
    """The particle counts and systems to run; ``ValueError`` for anything unusable."""
    particles = counts(args.particles, "--particles")
    systems = [s for s in args.systems.split(",") if s.strip()]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown or not systems:
        raise ValueError(f"--systems takes {', '.join(SYSTEMS)}; got {args.systems!r}")
    at_least_one(args, "limit", "max_tokens", "max_steps", "judge_tokens")
    if not 0 <= args.start < args.limit:
        raise ValueError(f"--start must be >= 0 and below --limit ({args.limit}), got {args.start}")
    if not args.its_hub_timeout >= 0:  # also NaN
        raise ValueError(
            f"--its-hub-timeout must be >= 0 seconds (0: no limit), got {args.its_hub_timeout}"
        )
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


OUTCOME_SUMS = ("tokens_generated", "prompt_tokens_computed", "judge_fallbacks")
"""The per-problem counts a row sums."""


def wait_idle(
    counters: Callable[[], dict[str, float]], limit: float = 600.0, poll: float = 0.5
) -> None:
    """Wait until llama-server processes no request (after its_hub was stopped mid-problem
    its requests may still be running), so that the counters read next are this
    problem's whole count; ``RuntimeError`` after ``limit`` seconds."""
    end = time.monotonic() + limit
    while counters().get(BUSY_GAUGE, 0.0) > 0:
        if time.monotonic() > end:
            raise RuntimeError(f"llama-server still busy {limit:.0f} s after its_hub was stopped")
        time.sleep(poll)


def summarize(system: str, particles: int, outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    """One row: accuracy with its 95% Wilson interval, the problems' summed seconds and
    tokens, and how many judgements gave no score (each then scored as undecided);
    ``outcomes`` has one dict per problem with ``correct``, ``seconds`` and the counts
    named in ``OUTCOME_SUMS``."""
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
        **{k: sum(int(o[k]) for o in outcomes) for k in OUTCOME_SUMS},
        "timed_out": sum(bool(o.get("timed_out")) for o in outcomes),
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
        stopped = f" ({r['timed_out']} stopped at the time limit)" if r.get("timed_out") else ""
        lines.append(
            f"| {r['system']} | {r['particles']} | {r['correct']}/{r['problems']} = "
            f"{r['accuracy']:.2f} [{low:.2f}, {high:.2f}]{stopped} | {r['seconds']:.1f} "
            f"| {r['seconds'] / max(1, r['problems']):.1f} | {r['tokens_generated']:,} "
            f"| {r['prompt_tokens_computed']:,} | {r['judge_fallbacks']} | {up} |"
        )
    return "\n".join(lines)


# ---- the ledger ------------------------------------------------------------------------

Record = Callable[[dict[str, Any]], None]
"""Called with each problem's outcome as it finishes."""


def rows_path(args: argparse.Namespace) -> Path | None:
    """The ledger: ``--rows``, else ``--out`` with ``.rows.jsonl`` for ``.json``, else none."""
    if getattr(args, "rows", ""):
        return Path(args.rows)
    if args.out:
        out = Path(args.out)
        return out.with_name(out.stem + ".rows.jsonl")
    return None


def comparable(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings two parts of one comparison must share (not which particle counts,
    systems or how many problems a part runs)."""
    part = ("particles", "systems", "limit", "start")
    # settings added after ledgers were written: a ledger without one used its default
    later = {"judge_inline": False, "finish_on": False, "peer_sampling": "server"}
    return {**later, **{k: v for k, v in settings.items() if k not in part}}


def read_ledger(path: Path | None, current: dict[str, Any]) -> list[dict[str, Any]]:
    """The outcomes a ledger holds; ``ValueError`` when it was written with other settings
    or a line is unreadable (naming the line), so that no two comparisons are mixed."""
    if path is None or not path.exists() or path.stat().st_size == 0:
        return []
    lines = path.read_text().splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):  # a line cut short when a part was killed: dropped
                break
            raise ValueError(f"{path}:{number}: not a JSON line; fix or remove it") from None
    head, outcomes = records[0], records[1:]
    if not isinstance(head, dict) or "settings" not in head:
        raise ValueError(f"{path}: the first line is not the settings line of a ledger")
    theirs, ours = comparable(head["settings"]), comparable(current)
    if theirs != ours:
        differ = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        raise ValueError(
            f"{path} was written with other settings ({', '.join(differ)}); "
            "pass the same settings, or another --rows/--out to start a new comparison"
        )
    return outcomes


class Ledger:
    """Appends outcomes, one JSON line each, flushed as they come."""

    def __init__(self, path: Path | None, settings: dict[str, Any]) -> None:
        self.path = path
        if path is not None and (not path.exists() or path.stat().st_size == 0):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"settings": settings}) + "\n")
        elif path is not None:
            with path.open("rb+") as f:  # a line cut short by a kill: dropped
                data = f.read()
                if not data.endswith(b"\n"):
                    f.truncate(data.rfind(b"\n") + 1)

    def record(self, system: str, particles: int) -> Record:
        def write(outcome: dict[str, Any]) -> None:
            if self.path is not None:
                line = {"system": system, "particles": particles, **outcome}
                with self.path.open("a") as f:
                    f.write(json.dumps(line) + "\n")

        return write


# ---- ponder ------------------------------------------------------------------------------


class _Only:
    """A task that offers only the given problems (the ones a ledger lacks), the task's
    own in every other way (its name and options, so the run is recorded as the task's)."""

    def __init__(self, task: Any, problems: list[Any]) -> None:
        self.task = task
        self.name = task.name
        self.summary = task.summary
        self.answer_kind = task.answer_kind
        self._problems = problems

    def problems(self, limit: int | None = None, seed: int = 0, **options: Any) -> list[Any]:
        return self._problems[:limit]

    async def grade(self, problem: Any, result: Any) -> bool:
        return bool(await self.task.grade(problem, result))

    async def grade_candidates(self, problem: Any, candidates: Any) -> list[bool]:
        return list(await self.task.grade_candidates(problem, candidates))

    def options(self) -> dict[str, Any]:
        return dict(self.task.options())


def run_ponder(
    args: argparse.Namespace,
    particles: int,
    engine_options: dict[str, Any],
    problems: list[Any],
    record: Record,
) -> list[dict[str, Any]]:
    """ponder's particle filter with the judge over ``problems``, one at a time, each
    outcome recorded as it finishes."""
    from ponder.api import load_engine
    from ponder.evals.runner import StrategySpec, run_eval_async
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
    if args.finish_on:
        config["finish_on"] = STOP_TOKEN  # a particle ends where its_hub's would
    task = create_task("arithmetic", level=args.level)
    engine = load_engine(**engine_options)
    judge = create_scorer("judge", engine, inline=args.judge_inline)
    outcomes = []

    async def each(db: Path) -> None:
        for problem in problems:
            undecided = judge.undecided
            summary = await run_eval_async(
                cast(Task, _Only(task, [problem])),
                [StrategySpec(STRATEGY, STRATEGY, config)],
                [particles],
                [args.seed],
                None,
                db,
                engine,
                scorer=judge,
                concurrency=1,
                model=args.model,
                progress=False,
            )
            if summary.cells_failed:
                raise RuntimeError(f"ponder: problem {problem.id} failed: {summary.failures}")
            with Store(db) as store:
                [cell] = [c for c in store.cells(summary.run_id) if c.problem_id == problem.id]
            outcome = {
                "id": cell.problem_id,
                "answer": cell.answer,
                "correct": cell.correct,
                "seconds": cell.seconds,
                "tokens_generated": cell.tokens_generated,
                "prompt_tokens_computed": cell.prompt_tokens_computed,
                # neither Yes nor No among the judge's top tokens (scored 0.5)
                "judge_fallbacks": judge.undecided - undecided,
            }
            record(outcome)
            outcomes.append(outcome)
            _progress("ponder", particles, outcomes, len(problems))

    with tempfile.TemporaryDirectory(prefix="ponder-itshub-") as tmp:
        try:
            asyncio.run(each(Path(tmp) / "runs.sqlite"))
        finally:
            engine.close()
    return outcomes


def _progress(system: str, particles: int, done: list[dict[str, Any]], total: int) -> None:
    seconds = sum(o["seconds"] for o in done)
    print(
        f"{system} ({particles} particles): {len(done)}/{total} problems, {seconds:.0f} s",
        file=sys.stderr,
        flush=True,
    )


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
        binary, model, port, particles, args.n_ctx, threads, args.flash_attn, metrics=True,
        chat_template=args.peer_chat_template,
    )  # fmt: skip


def run_itshub(
    args: argparse.Namespace,
    particles: int,
    peer: tuple[str, Path],
    model: Path,
    problems: list[Any],
    record: Record,
) -> list[dict[str, Any]]:
    """its_hub's particle filtering with its LLM judge over ``problems``, one at a time,
    each outcome (graded, with llama-server's counters read before and after it) recorded
    as it finishes."""
    import httpx

    from ponder.tasks import create_task
    from ponder.types import Candidate

    binary, python = peer
    task = create_task("arithmetic", level=args.level)
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
        "timeout": args.its_hub_timeout or None,
        "temperature": TEMPERATURE,
        "seed": args.seed,
        "sampling": PLAIN_SAMPLING if args.peer_sampling == "ponder" else None,
        "problems": [{"id": p.id, "prompt": p.messages[-1]["content"]} for p in problems],
    }
    by_id = {p.id: p for p in problems}
    outcomes: list[dict[str, Any]] = []

    def counters() -> dict[str, float]:
        return parse_metrics(httpx.get(base + "/metrics", timeout=30).text)

    def graded(line: dict[str, Any], before: dict[str, float]) -> None:
        if line.get("timed_out"):  # stopped at --its-hub-timeout: no answer, counted wrong
            correct = False
            wait_idle(counters)
        else:  # its_hub's chosen text, graded as ponder grades a candidate without an answer
            candidate = Candidate(line["answer"], None, 0)
            [correct] = asyncio.run(task.grade_candidates(by_id[line["id"]], [candidate]))
        # judge fallbacks: replies LLMJudge read no score from (scored 5 of 10)
        outcome = {**line, "correct": correct, **counted(before, counters())}
        record(outcome)
        outcomes.append(outcome)
        _progress("its-hub", particles, outcomes, len(problems))

    cmd = server_command(binary, model, port, particles, args)
    with running(cmd, base + "/health"), tempfile.TemporaryFile("w+") as log:
        same_prompts(base, model)
        _drive(python, spec, log, counters, graded)
    return outcomes


def _drive(
    python: Path,
    spec: dict[str, Any],
    log: Any,
    counters: Callable[[], dict[str, float]],
    done: Callable[[dict[str, Any], dict[str, float]], None],
) -> None:
    """Run the driver on ``spec``, one problem at a time: the counters are read while the
    server is idle, the driver is told to go on (a line on its stdin), and ``done`` gets
    its JSON line with the counters from before (its own stderr goes to ``log``, shown if
    it fails)."""
    proc = subprocess.Popen(
        [str(python), str(DRIVER)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(json.dumps(spec) + "\n")
        for _ in spec["problems"]:
            before = counters()
            proc.stdin.write("go\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            if not line:  # the driver ended early: its exit status says why
                break
            done(json.loads(line), before)
        proc.stdin.close()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.wait() != 0:
        log.seek(0)
        raise RuntimeError(f"its_hub's driver failed ({proc.returncode}):\n{log.read()[-3000:]}")


# ---- orchestration -----------------------------------------------------------------------


def main(args: argparse.Namespace, engine_options: dict[str, Any]) -> int:
    from ponder.tasks import create_task

    particles, systems = check_args(args)
    model = model_path(args)
    args.peer_chat_template = args.peer_chat_template or PEER_CHAT_TEMPLATE  # named in results
    peer = peers(args) if "its-hub" in systems else ("", Path())
    current = settings(args, particles, systems)
    path = rows_path(args)
    kept = read_ledger(path, current)
    ledger = Ledger(path, current)
    problems = create_task("arithmetic", level=args.level).problems(args.limit)[args.start :]
    rows = []
    for p in particles:
        for system in systems:
            have = {o["id"]: o for o in kept if o["system"] == system and o["particles"] == p}
            missing = [q for q in problems if q.id not in have]
            print(
                f"{system}: {len(problems)} problems, {p} particles"
                + (f" ({len(problems) - len(missing)} from {path})" if have else "")
                + " …",
                file=sys.stderr,
                flush=True,
            )
            record = ledger.record(system, p)
            new: list[dict[str, Any]] = []
            if missing and system == "ponder":
                new = run_ponder(args, p, {**engine_options, "model": args.model}, missing, record)
            elif missing:
                new = run_itshub(args, p, peer, model, missing, record)
            by_id = {**have, **{o["id"]: o for o in new}}
            outcomes = [_plain(by_id[q.id]) for q in problems]
            row = summarize(system, p, outcomes)
            rows.append(row)
            print(format_table([row]).splitlines()[-1], file=sys.stderr, flush=True)
    print(format_table(rows))
    result = {"settings": current, "rows": rows}
    result["speedup"] = {str(k): v for k, v in speedups(rows).items()}
    write_json(result, args.out)
    return 0


def _plain(outcome: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in outcome.items() if k not in ("system", "particles")}


def settings(args: argparse.Namespace, particles: list[int], systems: list[str]) -> dict[str, Any]:
    keys = (
        "model",
        "limit",
        "level",
        "max_tokens",
        "max_steps",
        "judge_tokens",
        "judge_format",
        "judge_inline",
        "finish_on",
        "peer_sampling",
        "seed",
        "its_hub_timeout",
        "start",
        "peer_chat_template",
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
