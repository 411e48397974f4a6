"""``OpenAIEngine``: the engine protocol over OpenAI-compatible servers, on a private
event-loop thread so that any thread or event loop may call it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from ponder.engines.base import Capabilities, EngineError, raise_first_failure
from ponder.engines.chat_template import ChatTemplate
from ponder.engines.openai.calls import Call, build_calls
from ponder.engines.openai.detect import ServerInfo, detect
from ponder.engines.openai.profiles import PROFILES
from ponder.engines.openai.replies import completion
from ponder.engines.openai.transport import Servers
from ponder.retry import RetryPolicy
from ponder.types import Completion, Request

__all__ = ["OpenAIEngine"]

T = TypeVar("T")


class OpenAIEngine:
    """Generates through one or more OpenAI-compatible servers serving the same model.

    ``base_urls``: server roots such as ``http://host:8000`` (a trailing ``/v1`` is
    accepted). Requests go to the server with the fewest outstanding requests; a server
    that refuses connections is skipped for a while and the request fails over.
    ``model``: the served model name (default: the first one ``/v1/models`` lists).
    ``max_connections``: at most this many calls in flight over all servers.
    ``timeout``: seconds to wait for one reply. ``retries``, ``backoff``: ponder's retry
    policy (``ponder.retry``): further attempts after a connection failure, a 429 or a 5xx,
    the k-th after ``backoff * 2**(k-1)`` seconds times a random factor in [1, 1.5].
    ``chat_template``: Jinja source, a GGUF path or a ponder model name; when given, chat
    prefixes are rendered here and sent to ``/v1/completions`` (needed to continue a
    partial answer on servers without ``continue_final_message``). ``server``: a key of
    ``PROFILES`` to skip detection. ``max_context``/``logprobs``: declare what the server
    does not report (else detected; an unknown context size is 0).
    """

    name = "openai"

    def __init__(
        self,
        base_urls: str | Sequence[str],
        model: str | None = None,
        api_key: str | None = None,
        *,
        max_connections: int = 16,
        timeout: float = 600.0,
        retries: int = 4,
        backoff: float = 0.5,
        chat_template: str | None = None,
        server: str | None = None,
        max_context: int | None = None,
        logprobs: bool | None = None,
    ) -> None:
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise ValueError("give at least one base URL")
        for u in urls:
            if not u.startswith(("http://", "https://")):
                raise ValueError(f"a base URL starts with http:// or https://, got {u!r}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if server is not None and server not in PROFILES:
            raise ValueError(f"unknown server kind {server!r}; one of {sorted(PROFILES)}")
        policy = RetryPolicy(retries, backoff)
        self.model = model
        self.max_connections = max_connections
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.template = ChatTemplate.load(chat_template) if chat_template else None
        self.profile = PROFILES[server] if server else None
        self._max_context = max_context
        self._logprobs = logprobs
        self._info: ServerInfo | None = None
        self._closed = False
        self._close_lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ponder-openai")
        self._thread.daemon = True
        self._thread.start()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

        async def servers() -> Servers:
            return Servers(urls, policy, max_connections, timeout, headers)

        self._servers = self._run(servers())
        self._probe_lock = asyncio.Lock()

    # ---- protocol --------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        info = self._info or self._run(self._probe())
        return Capabilities(
            logprobs=info.logprobs,
            prefix_cache=info.profile.prefix_cache,
            max_parallel=self.max_connections,
            max_context=info.max_context or 0,
        )

    @property
    def base_urls(self) -> list[str]:
        return self._servers.urls

    def served(self) -> dict[str, int]:
        """How many calls each server answered successfully."""
        return self._servers.served()

    async def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        return raise_first_failure(await self.generate_settled(requests))

    async def generate_settled(
        self, requests: Sequence[Request]
    ) -> list[list[Completion] | Exception]:
        coro = self._settled(list(requests))
        if _running_loop() is self._loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def generate_sync(self, requests: Sequence[Request]) -> list[list[Completion]]:
        return raise_first_failure(self._run(self._settled(list(requests))))

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        asyncio.run_coroutine_threadsafe(self._servers.aclose(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> OpenAIEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the event-loop thread ---------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise EngineError("the engine is closed")
        if _running_loop() is self._loop:
            coro.close()
            raise EngineError("a blocking engine call was made from the engine's own loop")
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result()

    async def _probe(self) -> ServerInfo:
        """What the servers are (detected once; later calls return the first answer)."""
        async with self._probe_lock:
            if self._info is None:
                info = await detect(
                    self._servers,
                    self.model,
                    self.profile,
                    self._max_context,
                    self.template,
                    self._logprobs,
                )
                self.model, self.profile, self.template = info.model, info.profile, info.template
                self._max_context, self._logprobs = info.max_context, info.logprobs
                self._info = info
            return self._info

    async def _settled(self, requests: list[Request]) -> list[list[Completion] | Exception]:
        try:
            info = await self._probe()
        except EngineError as exc:
            return [exc for _ in requests]
        start = time.perf_counter()
        return list(await asyncio.gather(*(self._one(info, r, start) for r in requests)))

    async def _one(
        self, info: ServerInfo, request: Request, start: float
    ) -> list[Completion] | Exception:
        try:
            calls = build_calls(request, info.model, info.profile, info.logprobs, info.template)
        except (EngineError, ValueError) as exc:
            return exc
        tasks = [asyncio.ensure_future(self._complete(c, start)) for c in calls]
        try:
            done = await asyncio.gather(*tasks)
        except Exception as exc:  # one failed sample fails its request; stop the others
            for t in tasks:
                t.cancel()
            return exc
        return list(done)

    async def _complete(self, call: Call, start: float) -> Completion:
        reply = await self._servers.request("POST", call.path, call.body)
        choices = reply.get("choices") or []
        if not choices:
            raise EngineError(f"the server returned no choices: {str(reply)[:300]}")
        return completion(choices[0], reply.get("usage") or {}, call, start)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
