"""The embedded llama.cpp engine: a scheduler thread behind an async batch API."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from pathlib import Path
from typing import Any

from ponder import models
from ponder.engines.base import Capabilities, EngineError, raise_first_failure
from ponder.engines.chat_template import ChatTemplate
from ponder.engines.llamacpp.layout import (
    KV_BUDGET_MB,
    STREAM_CELLS,
    Plan,
    choose_layout,
    plan_layout,
)
from ponder.engines.llamacpp.native import NativeContext, NativeError, NativeModel
from ponder.engines.llamacpp.scheduler import Scheduler, Ticket
from ponder.types import Completion, Request


class LlamaCppEngine:
    """Runs a GGUF model in-process with continuous batching and prefix sharing.

    ``model`` is a registry name (see ``ponder models list``) or a path to a GGUF file.
    ``n_ctx`` is the number of KV cells in all; ``n_parallel`` the number of KV sequence
    slots (running sequences plus cached branches). ``layout`` places them
    (``layout.py``): ``"shared"``, one unified cache in which forks share cells and every
    query's attention runs over all sequences' cells; ``"streams"``, one KV stream of
    ``n_ctx // n_parallel`` cells per slot, in which a query attends only its own
    sequence and a fork copies its parent's stream; ``"auto"`` (``None``, unless
    ``PONDER_KV_LAYOUT`` says otherwise): streams of ``stream_cells`` cells, as many (up
    to ``n_parallel``) as ``kv_memory_mb`` holds, while the requests fit them (first
    streams of half that length, where those give more slots, until a request needs the
    full length), and the shared cache of ``n_ctx`` cells for those that do not.
    ``flash_attn``: llama.cpp's flash attention; ``None`` (llama.cpp's choice: on, on a
    CPU) is the exact mode, in which an output does not depend on its batch or cache;
    ``False`` is faster for one problem's long shared prefixes on a CPU
    (see ``native.one_problem_flash_attn``).
    ``chat_template``: how chat messages become the prompt. None: llama.cpp's built-in
    template for the model (``llama_chat_apply_template``), which adds no default system
    message; ``"jinja"``: the model's own Jinja template from its GGUF, rendered as
    Hugging Face renders it (the prompt llama-server, vLLM and transformers build,
    default system message and all); or Jinja source, a GGUF path or a model name whose
    template to render (docs/ENGINES.md, "Which chat template renders the prompt").
    Thread-safe: any thread or event loop may submit; one scheduler thread owns the
    llama.cpp context.
    """

    name = "llamacpp"

    def __init__(
        self,
        model: str = models.DEFAULT_MODEL,
        n_ctx: int = 16384,
        n_parallel: int = 64,
        n_batch: int = 512,
        n_threads: int | None = None,
        seed: int = 0,
        flash_attn: bool | None = None,
        layout: str | None = None,
        kv_memory_mb: float = KV_BUDGET_MB,
        stream_cells: int = STREAM_CELLS,
        chat_template: str | None = None,
    ) -> None:
        if n_parallel < 1 or n_parallel > 256:
            raise ValueError(f"n_parallel must be in [1, 256], got {n_parallel}")
        if n_batch < n_parallel:
            raise ValueError(
                f"n_batch ({n_batch}) must be >= n_parallel ({n_parallel}): every running "
                "sequence needs a place in each step's batch"
            )
        if n_ctx < 64:
            raise ValueError(f"n_ctx must be >= 64, got {n_ctx}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        if not kv_memory_mb > 0:
            raise ValueError(f"kv_memory_mb must be > 0, got {kv_memory_mb!r}")
        if stream_cells < 64:
            raise ValueError(f"stream_cells must be >= 64, got {stream_cells}")
        mode, n_ctx = choose_layout(layout, n_ctx, n_parallel)
        self.path: Path = models.resolve(model)
        self.model = model
        self._template = _chat_template(chat_template, self.path)
        # what a results store records of the prompt format: None for the built-in one
        self.chat_template = (
            None if self._template is None else "jinja:" + _digest(self._template.source)
        )
        self._threads = n_threads or max(1, os.cpu_count() or 1)
        self._n_batch = n_batch
        self._flash_attn = flash_attn
        self._weights = NativeModel(self.path)
        self._plan: Plan = plan_layout(
            mode, n_ctx, n_parallel, self._weights.kv_bytes_per_cell, kv_memory_mb, stream_cells
        )
        self.relayouts = 0
        # auto: which of the plan's stream sizes the streams have (the shortest at first).
        self._rung = 0
        try:
            self._nx = self._open(streams=self._plan.mode != "shared")
        except BaseException:
            self._weights.close()
            raise
        if self._plan.mode == "auto":
            self.max_seq_len = self._seq_limit(self._plan.n_ctx)
        else:
            self.max_seq_len = self._seq_limit(self._nx.n_ctx_seq)
        self._sched = Scheduler(self._nx, self._seq_limit(self._nx.n_ctx_seq))
        # Tickets taken in but not yet admitted: they wait for the other layout (auto).
        self._held: deque[Ticket] = deque()
        self._seed = seed
        self._inbox: queue.SimpleQueue[list[Ticket] | _Call | None] = queue.SimpleQueue()
        self._closed = False
        self._failure: str | None = None
        # Items taken from the inbox and not yet handled by the scheduler thread.
        self._taken: deque[list[Ticket] | _Call | None] = deque()
        self._cancelled: set[int] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="ponder-llamacpp", daemon=True)
        self._thread.start()

    def _seq_limit(self, cells: int) -> int:
        n_train = self._weights.n_ctx_train
        return min(cells, n_train) if n_train > 0 else cells

    def _context(self, streams: bool) -> NativeContext:
        plan = self._plan
        if streams and plan.mode == "auto":
            n_seq, cells = plan.rungs[self._rung]
            n_ctx = n_seq * cells
        else:  # the shared cache, or the fixed streams layout's own sizing
            n_ctx, n_seq = plan.n_ctx, plan.n_parallel
        return NativeContext(
            self._weights, n_ctx, n_seq, self._n_batch, self._threads, self._flash_attn,
            streams=streams,
        )  # fmt: skip

    def _open(self, streams: bool) -> NativeContext:
        """A context in the layout asked for; in ``auto``, when llama.cpp cannot make the
        streams (memory), the shared cache from then on."""
        try:
            return self._context(streams)
        except NativeError:
            if not streams or self._plan.mode != "auto":
                raise
            logging.getLogger(__name__).warning(
                "llama.cpp could not make %d KV streams of %d cells; using the shared cache",
                *self._plan.rungs[self._rung],
            )  # fmt: skip
            self._plan = Plan("shared", self._plan.n_ctx, self._plan.n_parallel)
            return self._context(streams=False)

    @property
    def layout(self) -> str:
        """The layout running now: ``"shared"`` or ``"streams"``."""
        return "streams" if self._nx.streams else "shared"

    @property
    def stream_cells(self) -> int:
        """Cells in each KV stream running now, as planned (llama.cpp may round them up
        to a multiple of 256); 0 in the shared cache."""
        if not self._nx.streams:
            return 0
        if self._plan.mode == "auto":
            return self._plan.rungs[self._rung][1]
        return int(self._nx.n_ctx_seq)

    @property
    def layout_mode(self) -> str:
        """``"auto"``, ``"shared"`` or ``"streams"`` (``auto`` moves between the two)."""
        return self._plan.mode

    # ---- protocol --------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            logprobs=True,
            prefix_cache=True,
            max_parallel=self._nx.n_seq_max,
            max_context=self.max_seq_len,
        )

    def render(self, request: Request) -> str:
        """The exact text the model sees for a request."""
        if isinstance(request.prefix, str):
            return request.prefix + request.partial
        if self._template is not None:
            return self._template.render(request.prefix) + request.partial
        return self._weights.apply_chat_template(request.prefix) + request.partial

    def tokenize(self, text: str) -> list[int]:
        return self._weights.tokenize(text)

    def submit(self, request: Request) -> Future[list[Completion]]:
        """Queue one request; the future resolves to its ``n`` completions."""
        return self.submit_many([request])[0]

    def submit_many(self, requests: Sequence[Request]) -> list[Future[list[Completion]]]:
        """Queue requests together: the scheduler takes them in as one, so the same call
        on the same cache state is batched, and so computed, the same way every time."""
        futures: list[Future[list[Completion]]] = []
        tickets: list[Ticket] = []
        now = time.perf_counter()
        for request in requests:
            fut: Future[list[Completion]] = Future()
            futures.append(fut)
            try:
                prompt = self._weights.tokenize(self.render(request))
            except ValueError as exc:
                fut.set_exception(exc)
                continue
            if not prompt:
                fut.set_exception(ValueError("the prompt is empty"))
                continue
            tickets.append(Ticket(request, prompt, fut, now))
        if tickets:
            with self._lock:
                refusal = self._refusal()
                if refusal is None:
                    self._inbox.put(tickets)
            if refusal is not None:
                for ticket in tickets:
                    _fail(ticket.future, refusal)
        return futures

    def cancel(self, fut: Future[list[Completion]]) -> None:
        """Stop the request behind ``fut``; its sequences leave the batch next step."""
        self._cancelled.add(id(fut))
        fut.cancel()

    async def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        return raise_first_failure(await self.generate_settled(requests))

    async def generate_settled(
        self, requests: Sequence[Request]
    ) -> list[list[Completion] | Exception]:
        futures = self.submit_many(requests)
        try:
            done = await asyncio.gather(
                *(asyncio.wrap_future(f) for f in futures), return_exceptions=True
            )
        except asyncio.CancelledError:
            for f in futures:
                self.cancel(f)
            raise
        return [_settle(d) for d in done]

    def generate_sync(self, requests: Sequence[Request]) -> list[list[Completion]]:
        return [f.result() for f in self.submit_many(requests)]

    def clear_cache(self) -> None:
        """Forget every cached prefix (for cold-start measurements); waits until done."""

        def clear() -> None:
            for slot in list(self._sched.idle):
                self._sched.evict(slot)
            self._sched.reset_if_empty()

        self._call(clear)

    def stats(self) -> dict[str, Any]:
        s = self._sched
        return {
            "layout": self.layout,
            "layout_mode": self._plan.mode,
            "stream_cells": self.stream_cells,
            "relayouts": self.relayouts,
            "held": len(self._held),
            "steps": s.steps,
            "preemptions": s.preemptions,
            "running": len(s.running),
            "waiting": len(s.waiting),
            "cached_slots": len(s.idle),
            "cached_tokens": s.tree.token_count(),
        }

    @property
    def failure(self) -> str | None:
        """Why the engine can serve nothing more (its scheduler thread stopped), or None
        while it is healthy. Once set, every waiting and new request fails at once."""
        return self._failure

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._inbox.put(None)
        self._thread.join()
        self._nx.close()
        self._weights.close()

    def __enter__(self) -> LlamaCppEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the scheduler thread --------------------------------------------------------

    def _refusal(self) -> EngineError | None:
        """Why a new item may not enter the inbox (call with the lock held)."""
        if self._failure is not None:
            return EngineError(self._failure)
        if self._closed:
            return EngineError("the engine is closed")
        return None

    def _call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the scheduler thread between two steps and wait for it."""
        call = _Call(fn)
        with self._lock:
            refusal = self._refusal()
            if refusal is None:
                self._inbox.put(call)
        if refusal is not None:
            raise refusal
        call.done.result()

    def _loop(self) -> None:
        """The scheduler thread. Should it ever stop on an error, the engine records why,
        fails every request in flight or queued, and refuses new ones."""
        try:
            self._serve()
        except BaseException as exc:
            logging.getLogger(__name__).critical("the engine stopped", exc_info=exc)
            self._stop(f"the engine stopped: {type(exc).__name__}: {exc}")
        else:
            self._stop("the engine was closed")

    def _serve(self) -> None:
        taken = self._taken
        while True:
            self._take(block=not self._sched.has_work and not self._held)
            while taken:
                item = taken[0]
                if item is None:
                    return
                if isinstance(item, _Call):
                    item.run()
                else:
                    self._held.extend(item)
                taken.popleft()
            if self._cancelled:
                self._mark_cancelled()
            self._admit()
            sched = self._sched
            if not sched.has_work:
                continue
            try:
                sched.step()
            except Exception as exc:
                sched.fail_all(exc)

    def _admit(self) -> None:
        """Hand the held tickets to the scheduler in order. In ``auto``, a ticket that
        wants the other layout stops the line until the running layout has drained;
        then the context is re-created in that layout."""
        held = self._held
        while held:
            ticket = held[0]
            if ticket.future.done():  # cancelled while held
                held.popleft()
                continue
            want = self._layout_for(ticket)
            if want != self._where():
                if self._sched.has_work:
                    return
                self._relayout(want)
            held.popleft()
            try:
                self._sched.add(ticket, self._seed + self._sched.steps)
            except Exception as exc:
                _fail(ticket.future, exc)

    def _where(self) -> tuple[str, int]:
        """The layout running now and, in streams, the index of its stream size in the
        plan's ``rungs`` (-1 in the shared cache)."""
        return ("streams", self._rung) if self._nx.streams else ("shared", -1)

    def _layout_for(self, ticket: Ticket) -> tuple[str, int]:
        """Where a ticket runs (as ``_where`` says it): in ``auto``, the running streams
        when its prompt plus ``max_tokens`` fits them; else the shortest streams it fits;
        else the shared cache. So the engine moves to longer streams for a request that
        needs them and stays there (no move back and forth between stream sizes); it
        comes back to the short ones only through the shared cache. A prompt that fits no
        layout stays in the running one, whose scheduler refuses it: no relayout for it."""
        where = self._where()
        if self._plan.mode != "auto" or len(ticket.prompt) >= self.max_seq_len:
            return where
        need = len(ticket.prompt) + ticket.request.params.max_tokens
        if where[0] == "streams" and need <= self._seq_limit(self.stream_cells):
            return where
        for rung, (_, cells) in enumerate(self._plan.rungs):
            if need <= self._seq_limit(cells):
                return ("streams", rung)
        return ("shared", -1)

    def _relayout(self, where: tuple[str, int]) -> None:
        """Re-create the context (empty) where ``_layout_for`` says; the scheduler starts
        afresh and keeps counting steps, so seeds stay distinct."""
        old = self._sched
        self._nx.close()
        layout, rung = where
        if layout == "streams":
            self._rung = rung
        self._nx = self._open(streams=layout == "streams")
        self._sched = Scheduler(self._nx, self._seq_limit(self._nx.n_ctx_seq))
        self._sched.steps, self._sched.preemptions = old.steps, old.preemptions
        self.relayouts += 1

    def _take(self, block: bool) -> None:
        """Move everything in the inbox now (waiting for a first item when ``block``),
        up to and including the close sentinel ``None``, to ``_taken``."""
        taken = self._taken
        try:
            taken.append(self._inbox.get(block=block))
        except queue.Empty:
            return
        while taken[-1] is not None:
            try:
                taken.append(self._inbox.get_nowait())
            except queue.Empty:
                return

    def _stop(self, reason: str) -> None:
        """Fail every request in flight or queued with ``reason``; record it unless the
        engine was closed on purpose."""
        with self._lock:
            if not self._closed:
                self._failure = reason
        error = EngineError(reason)
        sched = self._sched
        seqs = list(sched.running) + list(sched.waiting)
        for s in list(seqs):
            seqs.extend(s.followers)
        for s in seqs:
            _fail(s.ticket.future, error)
        for ticket in self._held:
            _fail(ticket.future, error)
        self._held.clear()
        self._take(block=False)
        for item in self._taken:
            if isinstance(item, _Call):
                _fail(item.done, error)
            elif item is not None:
                for ticket in item:
                    _fail(ticket.future, error)

    def _mark_cancelled(self) -> None:
        ids, self._cancelled = self._cancelled, set()
        for s in list(self._sched.running) + list(self._sched.waiting):
            if id(s.ticket.future) in ids:
                s.ticket.cancelled = True


class _Call:
    """A function for the scheduler thread and the future its caller waits on."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn
        self.done: Future[None] = Future()

    def run(self) -> None:
        try:
            self.fn()
        except Exception as exc:
            self.done.set_exception(exc)
        else:
            self.done.set_result(None)


def _chat_template(spec: str | None, path: Path) -> ChatTemplate | None:
    """The Jinja template ``spec`` names for the model at ``path`` (None: built-in)."""
    if spec is None:
        return None
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(
            'chat_template must be "jinja" (the model\'s own template), Jinja source, a GGUF '
            f"path or a model name, got {spec!r}"
        )
    return ChatTemplate.from_gguf(path) if spec == "jinja" else ChatTemplate.load(spec)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _fail(fut: Future[Any], exc: BaseException) -> None:
    with contextlib.suppress(InvalidStateError):
        if not fut.done():
            fut.set_exception(exc)


def _settle(d: object) -> list[Completion] | Exception:
    if isinstance(d, Exception):
        return d
    if isinstance(d, BaseException):
        raise d
    assert isinstance(d, list)
    return d
