"""Runs in flight: admission, execution on the shared engine, and their live events.

Each request becomes a ``Run``: an asyncio task that runs the strategy through an
``ObservedEngine`` (the shared engine plus a report of every finished batch), and a log
of events that any number of followers can replay and then watch live. A bounded number
of runs execute at once; a bounded number are admitted in all (running plus waiting).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from typing import Any

from ponder.api import solve_async
from ponder.engines.base import Capabilities, Engine, EngineError, raise_first_failure
from ponder.scoring import create_scorer
from ponder.server.metrics import Metrics
from ponder.server.responses import answer_of, ponder_field
from ponder.server.schemas import ApiError, RunSpec
from ponder.server.settings import ServerSettings
from ponder.types import Completion, Request, Result, Usage

BatchHook = Callable[[Sequence[Request], Sequence[list[Completion] | Exception]], None]
FINAL_EVENTS = ("result", "error", "cancelled")
RECENT_RUNS = 32


class ObservedEngine:
    """An engine that forwards every call to ``inner`` and reports each finished batch.

    Strategies run on it unchanged; ``on_batch(requests, outputs)`` sees the completions
    of every ``generate`` as soon as the batch is done, which is what makes a run's
    progress visible while it works. ``adjust`` rewrites each request first (the
    client's stop strings, log-probabilities, continued assistant text). Closing it
    leaves the shared engine open.
    """

    def __init__(
        self, inner: Engine, on_batch: BatchHook, adjust: Callable[[Request], Request] | None = None
    ) -> None:
        self.inner = inner
        self.on_batch = on_batch
        self.adjust = adjust or (lambda r: r)
        self.name = inner.name

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    async def generate_settled(
        self, requests: Sequence[Request]
    ) -> list[list[Completion] | Exception]:
        requests = [self.adjust(r) for r in requests]
        out = await self.inner.generate_settled(requests)
        self.on_batch(requests, out)
        return out

    async def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        return raise_first_failure(await self.generate_settled(requests))

    def generate_sync(self, requests: Sequence[Request]) -> list[list[Completion]]:
        requests = [self.adjust(r) for r in requests]
        out = self.inner.generate_sync(requests)
        self.on_batch(requests, out)
        return out

    def close(self) -> None:
        """The shared engine outlives every run: nothing to close here."""

    def __getattr__(self, name: str) -> Any:
        # Optional engine features (scoring continuations, tokenizing) pass straight through.
        return getattr(self.inner, name)


class Run:
    """One request being answered: its spec, state, outcome and event log."""

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        self.id = spec.id
        self.created = time.time()
        self.status = "waiting"
        self.events: list[dict[str, Any]] = []
        self.result: Result | None = None
        self.error: ApiError | None = None
        self.usage_seen = Usage()
        self.completions: list[Completion] = []
        self.scorer: Any = None
        self.samples_seen = 0
        self.batches = 0
        self.task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed", "cancelled")

    def emit(self, type: str, **data: Any) -> None:
        self.events.append(
            {"seq": len(self.events), "type": type, "t": round(time.time() - self.created, 3)}
            | data
        )
        # Wake every follower waiting on the current event, then start a fresh one.
        self._changed.set()
        self._changed = asyncio.Event()

    def record_batch(
        self, requests: Sequence[Request], outputs: Sequence[list[Completion] | Exception]
    ) -> None:
        """Log one finished engine batch: every completion's text, tokens and ending."""
        groups = []
        errors = 0
        for req, out in zip(requests, outputs, strict=True):
            if isinstance(out, Exception):
                errors += 1
                continue
            for c in out:
                self.usage_seen = self.usage_seen + c.usage
            self.completions.extend(out)
            self.samples_seen += len(out)
            groups.append(
                {
                    "after": req.partial[-200:],
                    "samples": [
                        {"text": c.text, "tokens": c.tokens, "finish_reason": c.finish_reason}
                        for c in out
                    ],
                }
            )
        self.batches += 1
        self.emit(
            "batch",
            index=self.batches - 1,
            groups=groups,
            errors=errors,
            samples=self.samples_seen,
            usage=self.usage_seen.as_dict(),
        )

    def chosen(self) -> Completion | None:
        """The sample the answer is, when it is one sample the run generated."""
        best = self.result.best if self.result else None
        if best is None:
            return None
        return next((c for c in self.completions if c.text == best.text), None)

    async def follow(self, heartbeat: float | None = None) -> AsyncIterator[dict[str, Any] | None]:
        """Every event from the first, then new ones as they happen, until the run ends.

        With ``heartbeat``, yields ``None`` after that many quiet seconds.
        """
        seen = 0
        while True:
            while seen < len(self.events):
                seen += 1
                yield self.events[seen - 1]
            if self.finished:
                return
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), heartbeat)
            except TimeoutError:
                yield None

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.spec.model,
            "strategy": self.spec.strategy,
            "budget": self.spec.budget.n,
            "status": self.status,
            "age_seconds": round(time.time() - self.created, 3),
            "samples": self.samples_seen,
            "tokens_generated": self.usage_seen.tokens_generated,
        }


class RunManager:
    """Admits, executes and tracks runs on one shared engine."""

    def __init__(self, engine: Engine, settings: ServerSettings, metrics: Metrics) -> None:
        self.engine = engine
        self.settings = settings
        self.metrics = metrics
        self.active: dict[str, Run] = {}
        self.recent: collections.deque[Run] = collections.deque(maxlen=RECENT_RUNS)
        self._slots = asyncio.Semaphore(settings.concurrency)

    @property
    def running(self) -> int:
        return sum(1 for r in self.active.values() if r.status == "running")

    @property
    def waiting(self) -> int:
        return sum(1 for r in self.active.values() if r.status == "waiting")

    def find(self, run_id: str) -> Run | None:
        return self.active.get(run_id) or next((r for r in self.recent if r.id == run_id), None)

    def start(self, spec: RunSpec) -> Run:
        """Admit ``spec`` and start it, or refuse with 429 when the queue is full."""
        if len(self.active) >= self.settings.queue_size:
            raise ApiError(
                429,
                f"the server is busy: {len(self.active)} runs are running or waiting "
                f"(limit {self.settings.queue_size}); retry later",
                "rate_limit_error",
                "queue_full",
                {"Retry-After": str(self.settings.retry_after)},
            )
        run = Run(spec)
        run.scorer = self._scorer(spec)
        self.active[run.id] = run
        run.emit(
            "queued",
            id=run.id,
            model=spec.model,
            strategy=spec.strategy,
            budget=spec.budget.n,
            max_tokens=spec.budget.max_tokens,
            config=spec.config,
        )
        run.task = asyncio.create_task(self._execute(run), name=f"ponder-run-{run.id}")
        return run

    async def _execute(self, run: Run) -> None:
        spec = run.spec
        try:
            async with self._slots:
                run.status = "running"
                run.emit("started")
                result = await solve_async(
                    spec.problem,
                    ObservedEngine(self.engine, run.record_batch, adjuster(spec)),
                    spec.strategy,
                    spec.budget,
                    run.scorer,
                    **spec.config,
                )
            run.result = result
            run.status = "done"
            self.metrics.count_run("completed", result.usage)
            text, finish = answer_of(result, spec.stop)
            run.emit(
                "result", content=text, finish_reason=finish, ponder=ponder_field(spec, result)
            )
        except asyncio.CancelledError:
            run.status = "cancelled"
            self.metrics.count_run("cancelled", run.usage_seen)
            run.emit("cancelled")
            raise
        except Exception as exc:
            run.error = as_api_error(exc)
            run.status = "failed"
            self.metrics.count_run("failed", run.usage_seen)
            run.emit("error", error=run.error.body()["error"])
        finally:
            self.active.pop(run.id, None)
            self.recent.append(run)

    def _scorer(self, spec: RunSpec) -> Any:
        """The run's scorer: the one the request names, else the server's default; a
        400 now (before any stream starts) when it cannot be made."""
        name = spec.scorer or self.settings.scorer
        if not name:
            return None
        options = dict(self.settings.scorer_options) if name == self.settings.scorer else {}
        try:
            return create_scorer(name, self.engine, **options)
        except (TypeError, ValueError) as exc:
            raise ApiError(
                400, f"scorer {name!r}: {exc}", code="invalid_scorer", param="ponder.scorer"
            ) from None

    async def cancel_all(self) -> None:
        """Cancel every run and wait for them to stop (server shutdown)."""
        tasks = [r.task for r in self.active.values() if r.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def adjuster(spec: RunSpec) -> Callable[[Request], Request]:
    """How each engine request of ``spec``'s run is rewritten: the client's stop strings
    added to every sample, log-probabilities asked for when the client wants them, a
    continued assistant message put before the text a chat request continues, and the
    client's response format imposed on every sample."""

    def adjust(req: Request) -> Request:
        params = req.params
        if spec.stop:
            params = replace(params, stop=tuple(dict.fromkeys(params.stop + spec.stop)))
        if spec.logprobs:
            top = max(params.top_logprobs, spec.top_logprobs)
            params = replace(params, logprobs=True, top_logprobs=top)
        partial = req.partial
        if spec.partial and isinstance(req.prefix, tuple):
            partial = spec.partial + partial
        fmt = spec.response_format or req.response_format
        return replace(req, params=params, partial=partial, response_format=fmt)

    return adjust


def as_api_error(exc: Exception) -> ApiError:
    """How a failure inside a run is reported: bad input 400, engine trouble 503."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ValueError):
        message = str(exc).replace("e.g. --scorer judge", 'e.g. "ponder": {"scorer": "judge"}')
        return ApiError(400, message, "invalid_request_error", "invalid_request")
    if isinstance(exc, EngineError):
        return ApiError(503, f"the engine failed: {exc}", "server_error", "engine_error")
    return ApiError(500, f"{type(exc).__name__}: {exc}", "server_error", "internal_error")
