"""Tests for ponder.scoring.remote against a real HTTP server on loopback.

The server (stdlib ``http.server`` in a thread) plays a reward model: it answers in vLLM's
pooling / classify formats or the generic format, fails the first requests with 503, answers
garbage, refuses with 4xx, or hangs, as each test tells it to.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ponder.engines.base import EngineError
from ponder.scoring import ScorerError, create_scorer, require_outcome, require_process
from ponder.scoring.remote import QWEN_PRM_TEMPLATE, RemoteScorer, RemoteScorerError
from ponder.types import Problem

PROBLEM = Problem.from_question("What is 2 + 3?", system="Be brief.", id="p1")

Reply = tuple[int, Any]  # status, JSON body (or raw bytes)


class Server:
    """A reward-model stand-in on 127.0.0.1 with a scriptable reply per request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, Any]] = []
        self.reply: Callable[[str, Any], Reply] = lambda path, body: (200, {})
        self.fail_first = 0
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"null")
                server.requests.append((self.path, body))
                if len(server.requests) <= server.fail_first:
                    status, payload = 503, {"error": "warming up"}
                else:
                    status, payload = server.reply(self.path, body)
                if payload == "hang":
                    server.release.wait(30)
                    return
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def prm_reply(path: str, body: Any) -> Reply:
    """Per step tag, [p_wrong, p_right] with p_right = 0.9 unless the step mentions 7."""
    data = []
    for index, prompt in enumerate(body["input"]):
        response = prompt.split("<|im_start|>assistant\n", 1)[1]
        steps = response.split("<extra_0>")[:-1]
        rows = [[0.8, 0.2] if "7" in s else [0.1, 0.9] for s in steps]
        data.append({"index": index, "object": "pooling", "data": rows})
    # vLLM lists results in order; reversed here to check that "index" is honoured.
    return 200, {"object": "list", "data": data[::-1], "usage": {"prompt_tokens": 1}}


def test_pooling_mode_outcome_and_process(server: Server) -> None:
    server.reply = prm_reply
    scorer = RemoteScorer(server.url + "/v1", model="Qwen/Qwen2.5-Math-PRM-7B", aggregate="min")
    texts = ["2 + 3 = 5.\n\nThe answer is 5.", "2 + 3 = 7.\n\nThe answer is 7.", "Five."]
    scores = run(scorer.score(PROBLEM, texts))
    assert scores.values == (0.9, 0.2, 0.9)
    assert scores.usage.scorer_calls == 3
    [(path, body)] = server.requests
    assert path == "/pooling" and body["model"] == "Qwen/Qwen2.5-Math-PRM-7B"
    assert body["input"][0] == QWEN_PRM_TEMPLATE.format(
        system="Please reason step by step, and put your final answer within \\boxed{}.",
        question="What is 2 + 3?",
        response="2 + 3 = 5.<extra_0>The answer is 5.<extra_0>",
    )

    partials = [["Add.\n\n", "2 + 3 = 7.\n\n"], ["2 + 3 = 7.\n\n", "No: 2 + 3 = 5.\n\n"]]
    steps = run(scorer.score_steps(PROBLEM, partials))
    assert steps.values == (0.2, 0.9)
    assert len(server.requests) == 2


def test_aggregates_and_batches(server: Server) -> None:
    server.reply = prm_reply
    text = "a\n\nb 7\n\nc"  # rewards 0.9, 0.2, 0.9
    expected = {"last": 0.9, "min": 0.2, "mean": 2.0 / 3, "prod": 0.9 * 0.2 * 0.9}
    for aggregate, value in expected.items():
        [got] = run(RemoteScorer(server.url, aggregate=aggregate).score(PROBLEM, [text])).values
        assert got == pytest.approx(value, abs=1e-12)
    server.requests.clear()
    scorer = RemoteScorer(server.url, batch_size=2, max_connections=2)
    scores = run(scorer.score(PROBLEM, ["x 7", "y", "z", "w 7", "v"]))
    assert scores.values == (0.2, 0.9, 0.9, 0.2, 0.9)
    assert sorted(len(body["input"]) for _, body in server.requests) == [1, 2, 2]


def test_classify_mode(server: Server) -> None:
    def reply(path: str, body: Any) -> Reply:
        probs = [[0.3, 0.7] if "5" in p else [0.6, 0.4] for p in body["input"]]
        data = [
            {"index": i, "label": "x", "probs": p, "num_classes": 2} for i, p in enumerate(probs)
        ]
        return 200, {"data": data}

    server.reply = reply
    scorer = RemoteScorer(server.url, model="rm", mode="classify")
    assert run(scorer.score(PROBLEM, ["It is 5.", "It is 7."])).values == (0.7, 0.4)
    path, body = server.requests[0]
    assert path == "/classify" and "<extra_0>" not in body["input"][0]


def test_generic_mode(server: Server) -> None:
    def reply(path: str, body: Any) -> Reply:
        items = body.get("candidates") or body.get("partials")
        return 200, {"scores": [float(len(item)) for item in items]}

    server.reply = reply
    scorer = create_scorer("remote", None, url=server.url + "/score", mode="generic")
    assert require_outcome(scorer, "best-of-n") is scorer
    assert require_process(scorer, "beam-search") is scorer
    assert run(scorer.score(PROBLEM, ["abc", "de"])).values == (3.0, 2.0)
    assert run(scorer.score_steps(PROBLEM, [["a", "b", "c"], ["d"]])).values == (3.0, 1.0)
    (path, outcome), (_, process) = server.requests
    assert path == "/score"
    assert outcome["problem"] == {
        "id": "p1",
        "question": "What is 2 + 3?",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is 2 + 3?"},
        ],
    }
    assert outcome["candidates"] == ["abc", "de"] and process["partials"] == [
        ["a", "b", "c"],
        ["d"],
    ]


def test_retries_503_with_backoff_then_succeeds(server: Server) -> None:
    server.reply = lambda path, body: (200, {"scores": [0.5] * len(body["candidates"])})
    server.fail_first = 2
    scorer = RemoteScorer(server.url, mode="generic", retries=3, backoff=0.01)
    assert run(scorer.score(PROBLEM, ["a"])).values == (0.5,)
    assert len(server.requests) == 3


def test_gives_up_after_the_retries(server: Server) -> None:
    server.fail_first = 10
    scorer = RemoteScorer(server.url, mode="generic", retries=2, backoff=0.01)
    with pytest.raises(RemoteScorerError, match=r"after 3 attempts; last: .*HTTP 503: warming up"):
        run(scorer.score(PROBLEM, ["a"]))
    assert len(server.requests) == 3


def test_4xx_is_not_retried(server: Server) -> None:
    server.reply = lambda path, body: (400, {"error": "model 'x' does not exist"})
    scorer = RemoteScorer(server.url, model="x", retries=3, backoff=0.01)
    with pytest.raises(RemoteScorerError, match="HTTP 400.*does not exist"):
        run(scorer.score(PROBLEM, ["a"]))
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"<html>oops</html>", "not JSON"),
        ({"result": [1]}, "expected {'scores'"),
        ({"scores": [0.1, 0.2]}, "expected 1 scores, got 2"),
        ({"scores": ["high"]}, "finite number"),
        ({"scores": [float("nan")]}, "finite number"),
    ],
)
def test_malformed_generic_answers(server: Server, payload: Any, message: str) -> None:
    server.reply = lambda path, body: (200, payload)
    scorer = RemoteScorer(server.url, mode="generic", retries=0)
    with pytest.raises(RemoteScorerError, match=message):
        run(scorer.score(PROBLEM, ["a"]))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"data": "nope"}, r"expected \{'data'"),
        ({"data": []}, "expected 1 results, got 0"),
        ({"data": [{"index": 0, "data": []}]}, r"one reward per step \(2\), got 0"),
        ({"data": [{"index": 0, "data": [[0.1, 0.2, 0.7]] * 2}]}, None),
        ({"data": [{"index": 0, "data": [[0.1, None], [0.2, 0.8]]}]}, "finite number"),
    ],
)
def test_malformed_pooling_answers(server: Server, data: Any, message: str | None) -> None:
    server.reply = lambda path, body: (200, data)
    scorer = RemoteScorer(server.url, retries=0)
    if message is None:  # three classes: label 1 is still a valid column
        assert run(scorer.score(PROBLEM, ["a\n\nb"])).values == (0.2,)
        with pytest.raises(RemoteScorerError, match="label 5 is out of range"):
            run(RemoteScorer(server.url, label=5).score(PROBLEM, ["a\n\nb"]))
        return
    with pytest.raises(RemoteScorerError, match=message):
        run(scorer.score(PROBLEM, ["a\n\nb"]))


def test_timeout_is_a_clear_error(server: Server) -> None:
    server.reply = lambda path, body: (200, "hang")
    scorer = RemoteScorer(server.url, mode="generic", timeout=0.2, retries=2)
    with pytest.raises(RemoteScorerError, match=r"no reply within 0.2 s"):
        run(scorer.score(PROBLEM, ["a"]))
    assert len(server.requests) == 1  # a hung server is not hammered with retries


def test_connection_refused_is_retried_then_reported() -> None:
    s = Server()
    url = s.url
    s.close()  # nothing listens on this port now
    scorer = RemoteScorer(url, mode="generic", retries=2, backoff=0.01)
    with pytest.raises(RemoteScorerError, match="after 3 attempts; last: .*cannot connect"):
        run(scorer.score(PROBLEM, ["a"]))


def test_scorer_failures_are_scorer_errors_not_engine_errors() -> None:
    assert issubclass(RemoteScorerError, ScorerError)
    assert not issubclass(RemoteScorerError, EngineError)


def test_one_scorer_serves_several_event_loops(server: Server) -> None:
    server.reply = lambda path, body: (200, {"scores": [1.0] * len(body["candidates"])})
    scorer = RemoteScorer(server.url, mode="generic")
    assert run(scorer.score(PROBLEM, ["a"])).values == (1.0,)
    assert run(scorer.score(PROBLEM, ["b", "c"])).values == (1.0, 1.0)
    run(scorer.aclose())


def test_configuration_errors() -> None:
    with pytest.raises(ValueError, match="needs url"):
        create_scorer("remote", None)
    with pytest.raises(ValueError, match="http"):
        RemoteScorer("localhost:8000")
    with pytest.raises(ValueError, match="mode"):
        RemoteScorer("http://x", mode="score")
    with pytest.raises(ValueError, match="aggregate"):
        RemoteScorer("http://x", aggregate="max")
    with pytest.raises(ValueError, match="prompt_template"):
        RemoteScorer("http://x", prompt_template="{question}")
    with pytest.raises(ValueError, match="no steps"):
        run(RemoteScorer("http://x").score_steps(PROBLEM, [["  "]]))
    assert RemoteScorer("http://h:1/v1/").url == "http://h:1/pooling"
    assert RemoteScorer("http://h:1/classify", mode="classify").url == "http://h:1/classify"


def test_429_is_retried_like_the_engine_does(server: Server) -> None:
    answers = iter([(429, {"error": "rate limited"})])
    server.reply = lambda path, body: next(
        answers, (200, {"scores": [0.25] * len(body["candidates"])})
    )
    scorer = RemoteScorer(server.url, mode="generic", retries=2, backoff=0.01)
    assert run(scorer.score(PROBLEM, ["a"])).values == (0.25,)
    assert len(server.requests) == 2


def test_an_evaluation_records_a_scorer_failure_as_the_scorer_s(server: Server, tmp_path) -> None:
    from scripted import ScriptedEngine

    from ponder.evals.runner import run_eval
    from ponder.evals.store import Store
    from ponder.tasks import create_task

    server.reply = lambda path, body: (400, {"error": "model 'x' does not exist"})
    engine = ScriptedEngine(lambda prefix, i: f"The answer is {i}.")
    scorer = RemoteScorer(server.url, mode="generic", retries=0)
    db = tmp_path / "runs.sqlite"
    task = create_task("arithmetic")
    s = run_eval(task, "best-of-n", [2], 1, 2, db, engine, scorer, progress=False)
    assert (s.cells_run, s.cells_failed) == (0, 2)
    with Store(db) as store:
        errors = [e["error"] for e in store.errors()]
    assert len(errors) == 2
    assert all(e.startswith("RemoteScorerError: ") and "HTTP 400" in e for e in errors)
