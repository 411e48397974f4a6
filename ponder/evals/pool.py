"""Sample pools: per problem and seed, ``n`` samples drawn once and stored with everything
the selection rules need, so that every sampling strategy at every ``k <= n`` is estimated
from them without generating anything new (``ponder.evals.estimators``).

A pool is one engine request with ``n`` samples: the prompt is computed once and forked.
Each sample is stored with its text, extracted answer, tokens, the per-token statistics
(mean token log-prob, the log path weights, DeepConf trace confidences), each requested
scorer's score (one scorer call over the pool's ``n`` texts) and its hidden-grader verdict
(metrics only, never selection). Sample ``i`` of seed ``s`` uses the engine's random stream
``(s, i)``, so a live strategy run with ``seed=s`` and budget ``k`` draws exactly the pool's
first ``k`` samples. Pools are committed to the store one by one; a killed run started
again with the same configuration draws only the missing pools.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ponder.engines.base import Engine, EngineError
from ponder.evals.runner import Progress, _version, describe_model, drain, seeds_of
from ponder.evals.store import PoolRecord, SampleRecord, Store
from ponder.scoring import ScorerError, create_scorer, require_outcome
from ponder.strategies import confidence
from ponder.strategies.common import SamplingConfig, sample, to_candidate
from ponder.strategies.confidence_vote import ConfidenceVoteConfig, token_confidences
from ponder.strategies.selection import path_log_weight
from ponder.tasks import Task, create_task
from ponder.types import Budget, Completion, Problem


@dataclass(frozen=True)
class PoolConfig(SamplingConfig):
    """How pools are drawn: ``n`` samples per problem and seed with the sampling settings
    of ``SamplingConfig`` (its ``seed`` is unused: the pool's seed is the run's). With
    ``top_logprobs > 0`` every sample also gets DeepConf trace confidences over groups of
    ``group_window`` tokens (0: confidence-vote's default); they cost the top log-probs."""

    n: int = 16
    top_logprobs: int = 20
    group_window: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n < 1:
            raise ValueError(f"pool size n must be >= 1, got {self.n}")
        if not 0 <= self.top_logprobs <= 20:
            raise ValueError(f"top_logprobs must be in [0, 20], got {self.top_logprobs}")
        if self.group_window < 0:
            raise ValueError(f"group_window must be >= 0 tokens, got {self.group_window}")

    @property
    def window(self) -> int:
        """The DeepConf group window in tokens."""
        return self.group_window or ConfidenceVoteConfig().group_window

    def recorded(self) -> dict[str, Any]:
        """The settings as recorded in the run's configuration (no seed; resolved window)."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "seed"}
        out["group_window"] = self.window
        return out


@dataclass(frozen=True)
class PoolSummary:
    """What one invocation of ``run_pool`` did."""

    run_id: str
    pools_total: int
    pools_already_done: int
    pools_run: int
    pools_failed: int
    samples: int
    tokens_generated: int
    seconds: float
    failures: tuple[str, ...] = ()


def sample_stats(completion: Completion, config: PoolConfig) -> dict[str, Any]:
    """The per-token statistics of one sample: ``mean_logprob``, ``log_weight_mean`` /
    ``log_weight_sum`` (weighted-vote's path weights; None for an empty path) and, with top
    log-probs, ``confidence``: DeepConf trace confidence by kind."""
    stats: dict[str, Any] = {"mean_logprob": completion.mean_logprob}
    if completion.logprobs is None:
        return stats
    for key, normalize in (("log_weight_mean", True), ("log_weight_sum", False)):
        w = path_log_weight(completion, normalize)
        stats[key] = None if w == float("-inf") else w
    if config.top_logprobs and all(t.top for t in completion.logprobs):
        conf = token_confidences(completion.logprobs)
        stats["confidence"] = {
            kind: confidence.trace_confidence(conf, config.window, kind)
            for kind in confidence.TRACE_CONFIDENCES
        }
    return stats


async def draw_pool(
    task: Task,
    problem: Problem,
    seed: int,
    config: PoolConfig,
    engine: Engine,
    scorers: Mapping[str, Any],
) -> PoolRecord:
    """One pool: ``config.n`` samples in one request, graded, scored by every scorer once.
    The record's ``run_id`` is left for the caller to set."""
    t0 = time.perf_counter()
    logprobs = engine.capabilities.logprobs
    params = config.sampling(
        Budget(),
        seed=seed,
        logprobs=logprobs,
        top_logprobs=config.top_logprobs if logprobs else 0,
    )
    completions = await sample(engine, problem, params, config.n)
    record = await pool_record(task, problem, seed, config, completions, scorers)
    return dataclasses.replace(record, seconds=time.perf_counter() - t0)


async def score_texts(
    problem: Problem, texts: Sequence[str], scorers: Mapping[str, Any]
) -> tuple[dict[str, tuple[float, ...]], dict[str, dict[str, float]]]:
    """Every scorer called once over all ``texts``: scorer name -> one score per text, and
    scorer name -> the usage of that call."""
    scores: dict[str, tuple[float, ...]] = {}
    usage: dict[str, dict[str, float]] = {}
    for name, scorer in scorers.items():
        scored = await require_outcome(scorer, "pool").score(problem, texts)
        scores[name] = scored.values
        usage[name] = scored.usage.as_dict()
    return scores, usage


async def pool_record(
    task: Task,
    problem: Problem,
    seed: int,
    config: PoolConfig,
    completions: Sequence[Completion],
    scorers: Mapping[str, Any],
) -> PoolRecord:
    """The pool record of ``completions`` (samples of ``problem``): answers extracted,
    every scorer called once over all texts, every sample graded."""
    kind = task.answer_kind if config.answer_kind == "auto" else config.answer_kind
    cands = [to_candidate(c, kind) for c in completions]
    scores, scorer_usage = await score_texts(problem, [c.text for c in cands], scorers)
    correct = await task.grade_candidates(problem, cands)
    usage = sum((c.usage for c in completions[1:]), completions[0].usage)
    samples = tuple(
        SampleRecord(
            text=c.text,
            answer=cand.answer,
            tokens=c.tokens,
            finish_reason=c.finish_reason,
            correct=bool(ok),
            stats=sample_stats(c, config),
            scores={name: values[i] for name, values in scores.items()},
        )
        for i, (c, cand, ok) in enumerate(zip(completions, cands, correct, strict=True))
    )
    return PoolRecord(
        run_id="",
        problem_id=problem.id,
        seed=seed,
        reference=problem.reference,
        samples=samples,
        usage=usage.as_dict(),
        scorer_usage=scorer_usage,
        seconds=0.0,
    )


def _build_scorers(
    scorers: Sequence[str] | Mapping[str, Any],
    engine: Engine,
    scorer_options: Mapping[str, Mapping[str, Any]] | None,
) -> dict[str, Any]:
    """Scorer objects by name (``scorers``: registered names, built against ``engine`` with
    their ``scorer_options``, or a mapping name -> scorer), each checked to score outcomes."""
    if isinstance(scorers, Mapping):
        built = dict(scorers)
    else:
        built = {}
        for name in scorers:
            options = dict((scorer_options or {}).get(name, {}))
            try:
                built[name] = create_scorer(name, engine, **options)
            except TypeError as exc:  # an option the scorer does not take
                raise ValueError(f"pool scorer {name!r}: {exc}") from None
    for name, scorer in built.items():
        require_outcome(scorer, f"pool (scorer {name!r})")
    return built


def pool_run_config(
    task: Task,
    config: PoolConfig,
    scorers: Mapping[str, Any],
    model_info: dict[str, Any],
    engine_name: str,
    task_seed: int,
    scorer_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The configuration that identifies a pool run (its hash is the run id)."""
    return {
        "mode": "pool",
        "task": task.name,
        "task_options": task.options(),
        "task_seed": task_seed,
        "model": model_info,
        "engine": engine_name,
        "pool": config.recorded(),
        "scorers": {name: dict((scorer_options or {}).get(name, {})) for name in sorted(scorers)},
        "ponder_version": _version(),
    }


async def run_pool_async(
    task: Task | str,
    config: PoolConfig,
    seeds: int | Sequence[int],
    limit: int | None,
    db: str | Path | Store,
    engine: Engine,
    scorers: Sequence[str] | Mapping[str, Any] = (),
    concurrency: int = 4,
    model: str | None = None,
    task_seed: int = 0,
    progress: bool | IO[str] = True,
    scorer_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> PoolSummary:
    """Draw every missing pool (problem × seed) and store each as it finishes.

    ``scorers``: registered scorer names (built against ``engine`` with
    ``scorer_options[name]``) or a mapping name -> scorer object. A pool whose engine
    request or scorer fails (``EngineError``, ``ScorerError`` or ``ValueError``) is recorded in the
    ``errors`` table and the run goes on (the next run retries it); bad configuration
    (checked before the first pool) raises ``ValueError`` at once.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    seed_list = seeds_of(seeds)
    the_task = create_task(task) if isinstance(task, str) else task
    built = _build_scorers(scorers, engine, scorer_options)
    problems = the_task.problems(limit, seed=task_seed)
    run_config = pool_run_config(
        the_task,
        config,
        built,
        describe_model(model, engine),
        engine.name,
        task_seed,
        scorer_options,
    )
    grid = {"seeds": seed_list, "limit": limit, "n": config.n}
    store = db if isinstance(db, Store) else Store(db)
    try:
        run_id = store.begin_run(run_config, grid)
        done = store.finished_pools(run_id)
        todo = [(p, s) for s in seed_list for p in problems if (p.id, s) not in done]

        async def make(item: tuple[Problem, int]) -> PoolRecord:
            return await draw_pool(the_task, item[0], item[1], config, engine, built)

        return await _fill(
            store,
            run_id,
            todo,
            len(problems) * len(seed_list),
            make,
            lambda item: (item[0].id, item[1]),
            config.n,
            concurrency,
            progress,
        )
    finally:
        if not isinstance(db, Store):
            store.close()


async def _fill(
    store: Store,
    run_id: str,
    todo: Sequence[Any],
    total: int,
    make: Callable[[Any], Awaitable[PoolRecord]],
    key: Callable[[Any], tuple[str, int]],
    n: int,
    concurrency: int,
    progress: bool | IO[str],
) -> PoolSummary:
    """Make the pool of every item in ``todo`` (``total`` in the run, the rest already
    stored), ``concurrency`` at once, and store each as it finishes. An engine, scorer or
    value error is recorded in the ``errors`` table under the item's ``key`` (problem id,
    seed) as a failed ``pool[n]`` and the rest go on."""
    bar = None
    if progress:
        bar = Progress(len(todo), stream=None if progress is True else progress)
        if total != len(todo):
            bar.stream.write(f"run {run_id}: {total - len(todo)} of {total} pools done\n")
    started = time.monotonic()
    counts = {"samples": 0, "tokens": 0}
    failures: list[str] = []

    async def one(item: Any) -> None:
        problem_id, seed = key(item)
        try:
            record = await make(item)
        except (EngineError, ScorerError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            store.add_error(run_id, (problem_id, f"pool[{n}]", n, seed), error)
            failures.append(f"{problem_id} seed {seed}: {error}")
            if bar:
                bar.update(None)
            return
        store.add_pool(dataclasses.replace(record, run_id=run_id))
        counts["samples"] += record.n
        counts["tokens"] += sum(s.tokens for s in record.samples)
        if bar:
            bar.update(any(s.correct for s in record.samples))

    try:
        await drain(list(todo), concurrency, one)
    finally:
        if bar:
            bar.close()
    return PoolSummary(
        run_id=run_id,
        pools_total=total,
        pools_already_done=total - len(todo),
        pools_run=len(todo) - len(failures),
        pools_failed=len(failures),
        samples=counts["samples"],
        tokens_generated=counts["tokens"],
        seconds=time.monotonic() - started,
        failures=tuple(failures),
    )


def run_pool(
    task: Task | str,
    config: PoolConfig,
    seeds: int | Sequence[int],
    limit: int | None,
    db: str | Path | Store,
    engine: Engine,
    scorers: Sequence[str] | Mapping[str, Any] = (),
    **options: Any,
) -> PoolSummary:
    """Synchronous ``run_pool_async`` (for scripts and the CLI)."""
    return asyncio.run(run_pool_async(task, config, seeds, limit, db, engine, scorers, **options))


def source_run(store: Store, source: str) -> dict[str, Any]:
    """The pool run ``source`` of ``store`` (a ``ValueError`` naming what the store holds
    when there is none)."""
    runs = store.runs()
    run = next((r for r in runs if r["run_id"] == source), None)
    if run is None or run["config"].get("mode") != "pool":
        ids = [r["run_id"] for r in runs if r["config"].get("mode") == "pool"]
        held = f"its pool runs: {', '.join(ids)}" if ids else "it holds no pool run"
        raise ValueError(f"no pool run {source!r} in {store.path}; {held}")
    return run


async def rescore_pools_async(
    task: Task | str,
    source: str,
    limit: int | None,
    db: str | Path | Store,
    engine: Engine,
    scorers: Sequence[str] | Mapping[str, Any],
    concurrency: int = 4,
    model: str | None = None,
    task_seed: int = 0,
    progress: bool | IO[str] = True,
    scorer_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> PoolSummary:
    """Score the stored samples of pool run ``source`` with more scorers, generating nothing.

    Every finished pool of ``source`` among the task's first ``limit`` problems becomes a
    pool of a new run: the same samples (text, answer, tokens, statistics, the grader's
    verdict), each new scorer's score added, a scorer of the same name replacing the
    source's. So two verifiers (the judge asked apart and inline, a remote reward model)
    are compared on the very same samples, and every pool rule is estimated with the new
    scores. The new run's configuration is the source's with the scorers (and their
    options) merged, the source's id as ``samples_from`` and the scoring engine's model as
    ``scorer_model`` (a judge may be another model than the one that wrote the samples);
    it resumes like any pool run. A pool's usage stays its samples' (the cost at k is
    still k samples' tokens), its scorer usage gains the new calls, its seconds the
    scoring's."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    the_task = create_task(task) if isinstance(task, str) else task
    built = _build_scorers(scorers, engine, scorer_options)
    if not built:
        raise ValueError("scoring stored samples needs at least one scorer")
    store = db if isinstance(db, Store) else Store(db)
    try:
        cfg = source_run(store, source)["config"]
        mine = {"task": the_task.name, "options": the_task.options(), "seed": task_seed}
        theirs = {
            "task": cfg.get("task"),
            "options": cfg.get("task_options"),
            "seed": cfg.get("task_seed", 0),
        }
        if json.dumps(mine, sort_keys=True) != json.dumps(theirs, sort_keys=True, default=str):
            raise ValueError(
                f"samples from {source}: that run's problems are {theirs}, this command's "
                f"are {mine}; give the task, its options and --task-seed it was drawn with"
            )
        problems = {p.id: p for p in the_task.problems(limit, seed=task_seed)}
        pools = [p for p in store.pools(source) if p.problem_id in problems]
        if not pools:
            raise ValueError(
                f"samples from {source}: none of its finished pools is among this task's "
                f"first {limit or len(problems)} problems"
            )
        added = {name: dict((scorer_options or {}).get(name, {})) for name in sorted(built)}
        run_config = {
            **cfg,
            "scorers": dict(sorted({**cfg.get("scorers", {}), **added}.items())),
            "samples_from": source,
            "scorer_model": describe_model(model, engine),
            "ponder_version": _version(),
        }
        run_id = store.begin_run(run_config, {"samples_from": source, "limit": limit})
        done = store.finished_pools(run_id)
        todo = [p for p in pools if p.key not in done]

        async def make(pool: PoolRecord) -> PoolRecord:
            t0 = time.perf_counter()
            texts = [s.text for s in pool.samples]
            scores, usage = await score_texts(problems[pool.problem_id], texts, built)
            samples = tuple(
                dataclasses.replace(
                    s, scores={**s.scores, **{name: v[i] for name, v in scores.items()}}
                )
                for i, s in enumerate(pool.samples)
            )
            return dataclasses.replace(
                pool,
                samples=samples,
                scorer_usage={**pool.scorer_usage, **usage},
                seconds=pool.seconds + time.perf_counter() - t0,
            )

        n = int(cfg.get("pool", {}).get("n", 0))
        return await _fill(
            store,
            run_id,
            todo,
            len(pools),
            make,
            lambda p: p.key,
            n,
            concurrency,
            progress,
        )
    finally:
        if not isinstance(db, Store):
            store.close()


def rescore_pools(
    task: Task | str,
    source: str,
    limit: int | None,
    db: str | Path | Store,
    engine: Engine,
    scorers: Sequence[str] | Mapping[str, Any],
    **options: Any,
) -> PoolSummary:
    """Synchronous ``rescore_pools_async``."""
    return asyncio.run(rescore_pools_async(task, source, limit, db, engine, scorers, **options))
