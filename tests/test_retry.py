"""ponder.retry: the one retry policy of the HTTP clients (the OpenAI engine, the remote
scorer), on a real loopback HTTP server."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from ponder.retry import Retryable, RetryPolicy, error_text, send


class Scripted:
    """A loopback server answering each POST with the next (status, body) of ``replies``."""

    def __init__(self, replies: list[tuple[int, object]]) -> None:
        self.replies = list(replies)
        self.posts = 0
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                scripted.posts += 1
                status, body = scripted.replies.pop(0)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/x"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    s = Scripted([])
    yield s
    s.close()


async def _post(url: str, policy: RetryPolicy) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as client:
        return await policy.run(
            lambda: send(client, "POST", url, {"q": 1}, RuntimeError), "the test call", RuntimeError
        )


def test_429_and_5xx_are_retried_4xx_is_final(scripted: Scripted) -> None:
    scripted.replies = [(429, {"error": "slow down"}), (502, {}), (200, {"ok": 1})]
    response = asyncio.run(_post(scripted.url, RetryPolicy(retries=2, backoff=0.001)))
    assert response.json() == {"ok": 1} and scripted.posts == 3
    scripted.replies, scripted.posts = [(404, {"detail": "no such route"})], 0
    response = asyncio.run(_post(scripted.url, RetryPolicy(retries=2, backoff=0.001)))
    assert response.status_code == 404 and scripted.posts == 1
    assert error_text(response) == "no such route"


def test_gives_up_with_the_last_failure(scripted: Scripted) -> None:
    scripted.replies = [(503, {"error": {"message": "busy"}})] * 3
    with pytest.raises(
        RuntimeError, match=r"the test call failed after 3 attempts; last: .*HTTP 503: busy"
    ):
        asyncio.run(_post(scripted.url, RetryPolicy(retries=2, backoff=0.001)))
    assert scripted.posts == 3


def test_other_failures_pass_at_once() -> None:
    calls = 0

    async def attempt() -> int:
        nonlocal calls
        calls += 1
        raise KeyError("not retried")

    with pytest.raises(KeyError):
        asyncio.run(RetryPolicy(retries=5, backoff=0).run(attempt, "x", RuntimeError))
    assert calls == 1


def test_retryable_then_success() -> None:
    outcomes: list[object] = [Retryable("down", True), Retryable("503", False), 7]

    async def attempt() -> int:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        assert isinstance(outcome, int)
        return outcome

    assert asyncio.run(RetryPolicy(retries=2, backoff=0).run(attempt, "x", RuntimeError)) == 7


def test_waits_grow_with_jitter_and_bad_settings_are_refused() -> None:
    policy = RetryPolicy(retries=3, backoff=0.5)
    for retry, base in ((1, 0.5), (2, 1.0), (3, 2.0)):
        waits = [policy.wait_s(retry) for _ in range(50)]
        assert all(base <= w <= 1.5 * base for w in waits)
        assert len(set(waits)) > 1
    with pytest.raises(ValueError, match="retries and backoff must be >= 0"):
        RetryPolicy(retries=-1)
    with pytest.raises(ValueError, match="retries and backoff must be >= 0"):
        RetryPolicy(backoff=-0.1)
