"""The one retry policy of every HTTP client in ponder (the OpenAI engine, the remote scorer).

An attempt is retried when another attempt, or another server, may succeed: the connection
failed or broke (``httpx.NetworkError``, ``RemoteProtocolError``, ``ProxyError``, a
``ConnectTimeout``), or the server answered 429 or 5xx. Nothing else is retried: a 4xx
answer means the request is wrong, and a reply that does not come within the timeout means a
server that is alive but slow, which a second attempt would only keep waiting on. Retry ``k``
(1, 2, ...) waits ``backoff * 2**(k - 1)`` seconds times a random factor in [1, 1.5], so
clients that failed together do not come back together; after ``retries`` retries the caller's
error says what was tried and the last failure. tenacity runs the loop.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import tenacity

__all__ = ["RetryPolicy", "Retryable", "error_text", "send"]

T = TypeVar("T")

_CONNECTION_ERRORS = (
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
    httpx.ConnectTimeout,
)
_ERROR_TEXT_CHARS = 500


class Retryable(Exception):
    """An attempt failed in a way a new attempt may not; ``connection``: it never got an
    answer (the server may be down), rather than a 429 or 5xx one."""

    def __init__(self, message: str, connection: bool) -> None:
        super().__init__(message)
        self.connection = connection


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``retries`` retries after the first attempt, the k-th after
    ``backoff * 2**(k - 1) * U(1, 1.5)`` seconds."""

    retries: int = 3
    backoff: float = 0.5

    def __post_init__(self) -> None:
        if self.retries < 0 or self.backoff < 0:
            raise ValueError(
                f"retries and backoff must be >= 0, got retries={self.retries}, "
                f"backoff={self.backoff}"
            )

    @property
    def attempts(self) -> int:
        return self.retries + 1

    def wait_s(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        return self.backoff * 2 ** (retry - 1) * random.uniform(1.0, 1.5)

    async def run(
        self, attempt: Callable[[], Awaitable[T]], what: str, error: Callable[[str], Exception]
    ) -> T:
        """``await attempt()`` until it returns, raises something other than ``Retryable``
        (passed on at once), or has failed ``attempts`` times: then ``error`` of a message
        naming ``what``, the number of attempts and the last failure is raised."""
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=lambda state: self.wait_s(state.attempt_number),
            retry=tenacity.retry_if_exception_type(Retryable),
            reraise=True,
        )

        async def call() -> T:
            return await attempt()

        try:
            return await retrying(call)
        except Retryable as exc:
            raise error(f"{what} failed after {self.attempts} attempts; last: {exc}") from exc


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    body: Any,
    error: Callable[[str], Exception],
) -> httpx.Response:
    """One attempt of an HTTP request with a JSON ``body``: the answer when it is final (any
    status but 429 and 5xx), ``Retryable`` when a new attempt may do better, ``error`` of a
    clear message for a timeout or any other transport failure."""
    try:
        response = await client.request(method, url, json=body)
    except _CONNECTION_ERRORS as exc:
        raise Retryable(f"{url}: cannot connect ({type(exc).__name__}: {exc})", True) from exc
    except httpx.TimeoutException as exc:
        seconds = client.timeout.read
        limit = "in time" if seconds is None else f"within {seconds:g} s"
        raise error(f"{url}: no reply {limit} ({type(exc).__name__})") from exc
    except httpx.HTTPError as exc:
        raise error(f"{url}: {type(exc).__name__}: {exc}") from exc
    if response.status_code == 429 or response.status_code >= 500:
        raise Retryable(f"{url}: HTTP {response.status_code}: {error_text(response)}", False)
    return response


def error_text(response: httpx.Response) -> str:
    """What a server said went wrong: the message of an OpenAI (``{"error": {"message"}}``),
    FastAPI (``{"detail"}``) or plain JSON error, else the start of the body."""
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:_ERROR_TEXT_CHARS] or response.reason_phrase
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("message")))
        if isinstance(err, dict):
            return str(err.get("message") or err)
        if err is not None:
            return str(err)
    return str(data)[:_ERROR_TEXT_CHARS]
