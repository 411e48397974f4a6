"""HTTP to a pool of servers: least-loaded choice, failover, and ponder's retry policy."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from ponder.engines.base import ContextOverflowError, EngineError
from ponder.retry import Retryable, RetryPolicy, error_text, send

__all__ = ["Servers"]

_OVERFLOW = re.compile(
    r"context[ _](length|window|size)|maximum context|exceed_context|prompt is too long", re.I
)
_MAX_DOWN_S = 30.0


@dataclass
class _Backend:
    url: str
    outstanding: int = 0
    served: int = 0
    failures: int = 0
    down_until: float = 0.0


class Servers:
    """Servers of the same model behind one ``request`` call.

    Each attempt goes to the server with the fewest outstanding requests among those not
    yet tried for this request and not marked down; a server that cannot be reached is
    marked down for ``backoff * 2**failures`` seconds (at most 30). Attempts follow
    ``policy`` (``ponder.retry``); at most ``max_connections`` requests are in flight.
    Create it on the event loop that will use it.
    """

    def __init__(
        self,
        urls: Sequence[str],
        policy: RetryPolicy,
        max_connections: int,
        timeout: float,
        headers: dict[str, str],
    ) -> None:
        self._backends = [_Backend(_root(u)) for u in urls]
        self.policy = policy
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=None)
        to = httpx.Timeout(timeout, connect=min(timeout, 10.0), pool=None)
        self._client = httpx.AsyncClient(limits=limits, timeout=to, headers=headers)
        self._slots = asyncio.Semaphore(max_connections)

    @property
    def urls(self) -> list[str]:
        return [b.url for b in self._backends]

    def served(self) -> dict[str, int]:
        """How many calls each server answered successfully."""
        return {b.url: b.served for b in self._backends}

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        """The JSON reply to ``method path`` from one of the servers. ``EngineError`` for a
        4xx answer (``ContextOverflowError`` when the prompt does not fit), a timeout, a
        reply that is not JSON, or when the policy's attempts are spent."""
        tried: set[int] = set()
        async with self._slots:
            return await self.policy.run(
                lambda: self._attempt(method, path, body, tried), path, EngineError
            )

    async def _attempt(
        self, method: str, path: str, body: dict[str, Any] | None, tried: set[int]
    ) -> Any:
        i = self._pick(tried)
        b = self._backends[i]
        b.outstanding += 1
        try:
            resp = await send(self._client, method, b.url + path, body, EngineError)
        except Retryable as exc:
            tried.add(i)
            if exc.connection:
                b.failures += 1
                b.down_until = time.monotonic() + min(
                    _MAX_DOWN_S, self.policy.backoff * 2**b.failures
                )
            raise
        finally:
            b.outstanding -= 1
        if resp.status_code >= 400:
            msg = error_text(resp)
            text = f"{b.url}{path}: HTTP {resp.status_code}: {msg}"
            if resp.status_code in (400, 413, 422) and _OVERFLOW.search(msg):
                raise ContextOverflowError(text)
            raise EngineError(text)
        b.failures = 0
        b.down_until = 0.0
        b.served += 1
        try:
            return resp.json()
        except ValueError as exc:
            raise EngineError(f"{b.url}{path}: the reply is not JSON") from exc

    def _pick(self, tried: set[int]) -> int:
        now = time.monotonic()
        idx = [i for i in range(len(self._backends)) if i not in tried] or list(
            range(len(self._backends))
        )
        up = [i for i in idx if self._backends[i].down_until <= now]
        if up:
            return min(up, key=lambda i: (self._backends[i].outstanding, self._backends[i].served))
        return min(idx, key=lambda i: self._backends[i].down_until)


def _root(url: str) -> str:
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url
