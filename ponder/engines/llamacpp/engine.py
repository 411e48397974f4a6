"""The embedded llama.cpp engine: a scheduler thread behind an async batch API."""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ponder import models
from ponder.engines.base import Capabilities, EngineError
from ponder.engines.llamacpp.native import NativeContext
from ponder.engines.llamacpp.scheduler import Scheduler, Ticket
from ponder.types import Completion, Request


class LlamaCppEngine:
    """Runs a GGUF model in-process with continuous batching and prefix sharing.

    ``model`` is a registry name (see ``ponder models list``) or a path to a GGUF file.
    ``n_ctx`` is the size of the KV cache shared by all sequences; ``n_parallel`` the
    number of KV sequence slots (running sequences plus cached branches).
    ``flash_attn``: llama.cpp's flash attention; ``None`` (llama.cpp's choice: on, on a
    CPU) is the exact mode, in which an output does not depend on its batch or cache;
    ``False`` is faster for one problem's long shared prefixes on a CPU
    (see ``native.one_problem_flash_attn``).
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
        self.path: Path = models.resolve(model)
        self.model = model
        threads = n_threads or max(1, os.cpu_count() or 1)
        self._nx = NativeContext(self.path, n_ctx, n_parallel, n_batch, threads, flash_attn)
        import llama_cpp as ll

        n_train = ll.llama_model_n_ctx_train(self._nx.model)
        self.max_seq_len = min(self._nx.n_ctx, n_train) if n_train > 0 else self._nx.n_ctx
        self._sched = Scheduler(self._nx, self.max_seq_len)
        self._seed = seed
        self._inbox: queue.SimpleQueue[list[Ticket] | Callable[[], None] | None] = (
            queue.SimpleQueue()
        )
        self._closed = False
        self._cancelled: set[int] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="ponder-llamacpp", daemon=True)
        self._thread.start()

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
        return self._nx.apply_chat_template(request.prefix) + request.partial

    def tokenize(self, text: str) -> list[int]:
        return self._nx.tokenize(text)

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
            if self._closed:
                fut.set_exception(EngineError("the engine is closed"))
                continue
            try:
                prompt = self._nx.tokenize(self.render(request))
            except ValueError as exc:
                fut.set_exception(exc)
                continue
            if not prompt:
                fut.set_exception(ValueError("the prompt is empty"))
                continue
            tickets.append(Ticket(request, prompt, fut, now))
        if tickets:
            self._inbox.put(tickets)
        return futures

    def cancel(self, fut: Future[list[Completion]]) -> None:
        """Stop the request behind ``fut``; its sequences leave the batch next step."""
        self._cancelled.add(id(fut))
        fut.cancel()

    async def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        out = await self.generate_settled(requests)
        for r in out:
            if isinstance(r, Exception):
                raise r
        return [r for r in out if not isinstance(r, Exception)]

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
        done: Future[None] = Future()

        def clear() -> None:
            for slot in list(self._sched.idle):
                self._sched.evict(slot)
            self._sched.reset_if_empty()
            done.set_result(None)

        self._inbox.put(clear)
        done.result()

    def stats(self) -> dict[str, Any]:
        s = self._sched
        return {
            "steps": s.steps,
            "preemptions": s.preemptions,
            "running": len(s.running),
            "waiting": len(s.waiting),
            "cached_slots": len(s.idle),
            "cached_tokens": s.tree.token_count(),
        }

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._inbox.put(None)
        self._thread.join()
        self._nx.close()

    def __enter__(self) -> LlamaCppEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the scheduler thread --------------------------------------------------------

    def _loop(self) -> None:
        sched = self._sched
        while True:
            try:
                item = self._inbox.get(block=not sched.has_work)
            except queue.Empty:
                item = None
            else:
                if item is None:
                    break
            while item is not None:
                if isinstance(item, list):
                    for ticket in item:
                        sched.add(ticket, self._seed + sched.steps)
                else:
                    item()
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    item = None
                if item is None and self._closed:
                    break
            if self._cancelled:
                self._mark_cancelled()
            if not sched.has_work:
                continue
            try:
                sched.step()
            except Exception as exc:
                sched.fail_all(exc)
        sched.fail_all(EngineError("the engine was closed"))

    def _mark_cancelled(self) -> None:
        ids, self._cancelled = self._cancelled, set()
        for s in list(self._sched.running) + list(self._sched.waiting):
            if id(s.ticket.future) in ids:
                s.ticket.cancelled = True


def _settle(d: object) -> list[Completion] | Exception:
    if isinstance(d, Exception):
        return d
    if isinstance(d, BaseException):
        raise d
    assert isinstance(d, list)
    return d
