"""The eval runner: every (problem × strategy × budget × seed) cell, many at once through
one shared engine, each finished cell committed to SQLite immediately.

Cells run as asyncio tasks, at most ``concurrency`` at a time; they all send their work to
the same engine, whose scheduler batches the requests of different cells together. A run
killed at any point and started again with the same configuration skips the cells already
in the database and runs the rest.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ponder import models
from ponder.engines.base import Engine, EngineError
from ponder.evals.store import CellKey, CellRecord, Store
from ponder.options import parse_pair
from ponder.scoring import ScorerError, create_scorer
from ponder.strategies import canonical, create, settings
from ponder.tasks import Task, create_task
from ponder.types import Budget, Problem

_SPEC_RE = re.compile(r"^\s*([\w.-]+)\s*(?:\[(.*)\])?\s*$")


@dataclass(frozen=True)
class StrategySpec:
    """One strategy configuration in an eval: ``label`` names it in the results."""

    label: str
    name: str
    config: dict[str, Any] = field(default_factory=dict)


def parse_strategies(text: str | Sequence[str]) -> list[StrategySpec]:
    """Strategy specs from ``"vote,greedy,vote[temperature=1.0;max_tokens=64]"``: a name,
    optionally with settings in brackets (``;``-separated ``key=value``, values as JSON
    when they parse). The label is the spec as written, without spaces."""
    items = _split_top_level(text) if isinstance(text, str) else list(text)
    specs: list[StrategySpec] = []
    for item in items:
        match = _SPEC_RE.match(item)
        if not match:
            raise ValueError(f"bad strategy spec {item!r}; expected name or name[key=value;...]")
        name, body = match.group(1), match.group(2)
        config: dict[str, Any] = {}
        for pair in filter(None, (p.strip() for p in (body or "").split(";"))):
            key, value = parse_pair(pair, f"a setting in {item!r}")
            config[key] = value
        canonical(name)
        specs.append(StrategySpec("".join(item.split()), name, config))
    labels = [s.label for s in specs]
    if not specs:
        raise ValueError("give at least one strategy")
    if len(set(labels)) != len(labels):
        raise ValueError(f"strategy specs repeat: {', '.join(labels)}")
    return specs


def _split_top_level(text: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p for p in (p.strip() for p in parts) if p]


@dataclass(frozen=True)
class EvalSummary:
    """What one invocation of the runner did."""

    run_id: str
    cells_total: int
    cells_already_done: int
    cells_run: int
    cells_failed: int
    correct: int
    seconds: float
    failures: tuple[str, ...] = ()
    """One line per failed cell: its key and the error."""


class Progress:
    """A one-line progress bar on stderr: cells done, running accuracy, rate and ETA.

    On a terminal it redraws in place; otherwise it prints a line every ``interval`` seconds.
    ``work``: how much work each item is, in order (a cell's budget: a grid's cells at
    budget 16 take about 16 times those at budget 1); the ETA is the time so far per unit
    of work done, times the work left. Without it every item counts alike.
    """

    def __init__(
        self,
        total: int,
        stream: IO[str] | None = None,
        interval: float = 5.0,
        work: Sequence[float] | None = None,
    ) -> None:
        if work is not None and len(work) != total:
            raise ValueError(f"work needs one weight per item: {len(work)} for {total}")
        self.total = total
        self.work_total = float(sum(work)) if work is not None else float(total)
        self.work_done = 0.0
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval
        self.done = self.correct = self.failed = 0
        self.start = time.monotonic()
        self._last = -math.inf

    def update(self, correct: bool | None, work: float = 1.0) -> None:
        """One more item finished (``work``: its weight); ``correct`` None when it failed."""
        self.done += 1
        self.work_done += work
        if correct is None:
            self.failed += 1
        else:
            self.correct += int(correct)
        now = time.monotonic()
        if self.tty or now - self._last >= self.interval or self.done == self.total:
            self._last = now
            # On a terminal: back to the line start, draw, clear what a longer line left.
            text = f"\r{self.line()}\x1b[K" if self.tty else self.line() + "\n"
            self.stream.write(text)
            self.stream.flush()

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(frac * 20)
        graded = self.done - self.failed
        acc = f"{self.correct / graded:.3f}" if graded else "-"
        left = self.work_total - self.work_done
        eta = elapsed / self.work_done * left if self.work_done > 0 else math.nan
        failed = f" failed {self.failed}" if self.failed else ""
        return (
            f"[{bar:<20s}] {self.done}/{self.total} acc {acc}{failed} "
            f"elapsed {_duration(elapsed)} ETA {_duration(eta)}"
        )

    def close(self) -> None:
        if self.tty and self.done:
            self.stream.write("\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def describe_model(model: str | None, engine: Engine | None) -> dict[str, Any]:
    """The model's name and SHA-256 (pinned for registry models, hashed for GGUF paths),
    and the embedded engine's Jinja chat template when it renders one (its prompts differ
    from the built-in template's, so a run with it is a run of its own)."""
    name = model or str(getattr(engine, "model", "") or getattr(engine, "name", ""))
    template = getattr(engine, "chat_template", None)
    extra = {"chat_template": template} if isinstance(template, str) else {}
    if name in models.REGISTRY:
        return {"name": name, "sha256": models.REGISTRY[name].sha256, **extra}
    path = Path(name).expanduser()
    if path.is_file():
        return {"name": path.name, "sha256": models.sha256_file(path), **extra}
    return {"name": name, "sha256": None, **extra}


def strategy_for(spec: StrategySpec, task: Task, seed: int | None) -> Any:
    """The strategy for one spec and seed: the task's answer kind unless the spec sets one;
    the cell's seed replaces the config's ``seed``."""
    config = dict(spec.config)
    fields = settings(spec.name)
    if "answer_kind" in fields and "answer_kind" not in config:
        config["answer_kind"] = task.answer_kind
    if "seed" in fields and seed is not None:
        config["seed"] = seed
    return create(spec.name, **config)


def _is_seeded(spec: StrategySpec) -> bool:
    return "seed" in settings(spec.name)


def _config_dict(strategy: Any) -> dict[str, Any]:
    config = getattr(strategy, "config", None)
    if config is None or not dataclasses.is_dataclass(config):
        return {}
    # A setting added after runs were stored is named only when set, so that those runs
    # keep their ids (and resume): its field carries ``metadata={"named_when_set": True}``.
    unnamed = {
        f.name
        for f in dataclasses.fields(config)
        if f.metadata.get("named_when_set") and getattr(config, f.name) == f.default
    }
    return {k: v for k, v in dataclasses.asdict(config).items() if k != "seed" and k not in unnamed}


async def execute_cell(
    task: Task,
    problem: Problem,
    label: str,
    budget: int,
    seed: int,
    strategy: Any,
    engine: Engine,
    scorer: Any,
) -> CellRecord:
    """Run one cell and grade it; the record's ``run_id`` is left for the caller to set.
    Engine failures propagate as ``EngineError``, scorer failures as ``ScorerError``."""
    t0 = time.perf_counter()
    result = await strategy.run(problem, engine, scorer, Budget(n=budget))
    seconds = time.perf_counter() - t0
    correct = await task.grade(problem, result)
    candidates_ok = await task.grade_candidates(problem, result.candidates)
    u = result.usage
    return CellRecord(
        run_id="",
        problem_id=problem.id,
        strategy=label,
        budget=budget,
        seed=seed,
        answer=result.answer,
        reference=problem.reference,
        correct=correct,
        tokens_generated=u.tokens_generated,
        prompt_tokens_computed=u.prompt_tokens_computed,
        prompt_tokens_cached=u.prompt_tokens_cached,
        engine_calls=u.engine_calls,
        scorer_calls=u.scorer_calls,
        seconds=seconds,
        candidate_answers=tuple(c.answer for c in result.candidates),
        candidates_correct=tuple(candidates_ok),
        result=result.as_dict(),
    )


CellExecutor = Callable[[Problem, StrategySpec, int, int], Awaitable[CellRecord]]
"""Runs one cell somewhere (this process's engine, or a Ray actor) and returns its record."""


async def run_eval_async(
    task: Task | str,
    strategies: str | Sequence[str | StrategySpec],
    budgets: Sequence[int],
    seeds: int | Sequence[int],
    limit: int | None,
    db: str | Path | Store,
    engine: Engine | None,
    scorer: Any = None,
    concurrency: int = 8,
    model: str | None = None,
    task_seed: int = 0,
    progress: bool | IO[str] = True,
    executor: CellExecutor | None = None,
    engine_name: str | None = None,
    scorer_options: dict[str, Any] | None = None,
) -> EvalSummary:
    """Run every missing cell of the grid and store each as it finishes.

    Cells run on ``engine`` in this process, or through ``executor`` (e.g. Ray actors,
    ``ponder.evals.distributed``; then ``engine`` may be None and ``engine_name`` names the
    kind of engine the executor runs, so that the run's configuration, and with it its id,
    is the same as a local run's).

    ``seeds`` is a count (seeds ``0..seeds-1``) or a list; the cell's seed becomes the
    strategy's ``seed`` setting (strategies without one run only the first seed). ``scorer``
    is a registered scorer name (built against ``engine``), a scorer object or None;
    ``scorer_options`` are the options the scorer was built with (``--scorer-set``): they
    are part of the run's configuration, so that a run with other options is another run
    (a scorer name alone would resume, and mix, the cells of a run built otherwise).
    ``task_seed`` picks the problem set of generated tasks. A cell that fails (an
    ``EngineError``, a ``ScorerError``, or a ``ValueError`` raised while it runs, e.g. a
    strategy that cannot handle this problem) is recorded in the ``errors`` table with its
    error, listed in the summary's ``failures`` and retried by the next run; the other cells
    go on. Bad configuration, detected before the first cell, raises ``ValueError`` at once.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    if not budgets or any(int(b) < 1 for b in budgets):
        raise ValueError(f"budgets must be positive integers, got {list(budgets)}")
    seed_list = seeds_of(seeds)
    the_task = create_task(task) if isinstance(task, str) else task
    if isinstance(strategies, str):
        specs = parse_strategies(strategies)
    else:
        specs = [s if isinstance(s, StrategySpec) else parse_strategies(s)[0] for s in strategies]
    scorer_name = scorer if isinstance(scorer, str) else getattr(scorer, "name", None)
    if engine is None and executor is None:
        raise ValueError("run_eval needs an engine or an executor")
    if isinstance(scorer, str) and engine is not None:
        the_scorer = create_scorer(scorer, engine, **(scorer_options or {}))
    else:
        the_scorer = scorer
    problems = the_task.problems(limit, seed=task_seed)

    built = {}
    for spec in specs:
        spec_seeds = seed_list if _is_seeded(spec) else seed_list[:1]
        for s in spec_seeds:
            built[(spec.label, s)] = strategy_for(spec, the_task, s)
    config = {
        "task": the_task.name,
        "task_options": the_task.options(),
        "task_seed": task_seed,
        "model": describe_model(model, engine),
        "engine": engine_name or (engine.name if engine is not None else "unknown"),
        "strategies": {
            spec.label: {
                "name": canonical(spec.name),
                "config": _config_dict(built[(spec.label, seed_list[0])]),
            }
            for spec in specs
        },
        "scorer": scorer_name,
        "ponder_version": _version(),
    }
    if scorer_options:  # named only when given, so runs stored without options keep their ids
        config["scorer_options"] = dict(sorted(scorer_options.items()))
    grid = {"budgets": [int(b) for b in budgets], "seeds": seed_list, "limit": limit}

    store = db if isinstance(db, Store) else Store(db)
    try:
        run_id = store.begin_run(config, grid)
        done = store.finished(run_id)
        todo: list[tuple[Problem, StrategySpec, int, int]] = []
        total = 0
        for (label, s), _ in built.items():
            spec = next(x for x in specs if x.label == label)
            for b in budgets:
                for p in problems:
                    total += 1
                    if (p.id, label, int(b), s) not in done:
                        todo.append((p, spec, int(b), s))
        todo.sort(key=lambda cell: (cell[3], cell[2]))
        bar = None
        if progress:
            bar = Progress(
                len(todo),
                stream=None if progress is True else progress,
                work=[budget for _, _, budget, _ in todo],
            )
            if total != len(todo):
                bar.stream.write(
                    f"run {run_id}: {total - len(todo)} of {total} cells already done\n"
                )
        started = time.monotonic()
        counts = {"correct": 0, "failed": 0}
        failures: list[str] = []

        async def local(problem: Problem, spec: StrategySpec, budget: int, seed: int) -> CellRecord:
            assert engine is not None
            return await execute_cell(
                the_task, problem, spec.label, budget, seed, built[(spec.label, seed)], engine,
                the_scorer,
            )  # fmt: skip

        execute = executor or local

        async def run_cell(cell: tuple[Problem, StrategySpec, int, int]) -> None:
            problem, spec, budget, seed = cell
            key: CellKey = (problem.id, spec.label, budget, seed)
            try:
                record = await execute(problem, spec, budget, seed)
            except (EngineError, ScorerError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
                store.add_error(run_id, key, error)
                failures.append(f"{problem.id} {spec.label} budget {budget} seed {seed}: {error}")
                counts["failed"] += 1
                if bar:
                    bar.update(None, budget)
                return
            store.add_cell(dataclasses.replace(record, run_id=run_id))
            counts["correct"] += int(record.correct)
            if bar:
                bar.update(record.correct, budget)

        try:
            await drain(todo, concurrency, run_cell)
        finally:
            if bar:
                bar.close()
        return EvalSummary(
            run_id=run_id,
            cells_total=total,
            cells_already_done=total - len(todo),
            cells_run=len(todo) - counts["failed"],
            cells_failed=counts["failed"],
            correct=counts["correct"],
            seconds=time.monotonic() - started,
            failures=tuple(failures),
        )
    finally:
        if not isinstance(db, Store):
            store.close()


def seeds_of(seeds: int | Sequence[int]) -> list[int]:
    """``N`` means seeds ``0..N-1``; a sequence is taken as it is. At least one."""
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("give at least one seed")
    return seed_list


async def drain(
    items: Sequence[Any], concurrency: int, handle: Callable[[Any], Awaitable[None]]
) -> None:
    """``handle(item)`` for every item in order, at most ``concurrency`` at once; if one
    raises, the others are cancelled and the error propagates."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)

    async def worker() -> None:
        while not queue.empty():
            await handle(queue.get_nowait())

    workers = [asyncio.create_task(worker()) for _ in range(min(concurrency, len(items)))]
    try:
        await asyncio.gather(*workers)
    finally:
        for w in workers:
            w.cancel()


def run_eval(
    task: Task | str,
    strategies: str | Sequence[str | StrategySpec],
    budgets: Sequence[int],
    seeds: int | Sequence[int],
    limit: int | None,
    db: str | Path | Store,
    engine: Engine | None,
    scorer: Any = None,
    concurrency: int = 8,
    **options: Any,
) -> EvalSummary:
    """Synchronous ``run_eval_async`` (for scripts and the CLI)."""
    return asyncio.run(
        run_eval_async(
            task, strategies, budgets, seeds, limit, db, engine, scorer, concurrency, **options
        )
    )


def _version() -> str:
    from ponder import __version__

    return __version__
