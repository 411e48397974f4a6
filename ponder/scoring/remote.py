"""Reward models served over HTTP, as outcome and process scorers.

Three wire formats (``mode``):

* ``"pooling"`` -- vLLM's pooling API (``POST {url}/pooling``), for process reward models with
  step pooling such as Qwen2.5-Math-PRM (``vllm serve Qwen/Qwen2.5-Math-PRM-7B``). Each
  candidate becomes one prompt: the chat markup of ``prompt_template`` around the question and
  the steps, each step followed by ``step_tag`` (``<extra_0>``). The request is
  ``{"model": M, "input": [prompt, ...]}`` (plus ``extra_body``); the response is
  ``{"data": [{"index": i, "data": [[p_wrong, p_right], ...one row per step tag...]}, ...]}``.
  A step's reward is ``row[label]`` (default 1: the probability that the step is right).
* ``"classify"`` -- vLLM's classification API (``POST {url}/classify``), for reward models
  served as sequence classifiers: same request, response ``{"data": [{"index": i,
  "probs": [...]}, ...]}``; the score is ``probs[label]`` (``probs[0]`` for one class).
* ``"generic"`` -- any service: ``POST {url}`` with ``{"problem": {"id", "question",
  "messages"}, "candidates": [text, ...]}`` (outcome) or ``{"problem": ..., "partials":
  [[step, ...], ...]}`` (process); it answers ``{"scores": [float, ...]}``, one per item.

An outcome score from a step reward model aggregates the rewards of the candidate's steps
(split on ``step_delimiter``) with ``aggregate``: the ``last`` step's (default), the ``min``,
the ``mean`` or the product (``prod``). A process score is the reward of the last step.

Transport: one ``httpx.AsyncClient`` per event loop with at most ``max_connections``
connections; items go in batches of ``batch_size``; every request has a ``timeout``.
Connection failures, 429 and 5xx answers are retried by ponder's one retry policy
(``ponder.retry``): ``retries`` more attempts, the k-th after ``backoff * 2**(k-1)`` seconds
times a random factor in [1, 1.5]. A 4xx answer, a timeout, a malformed answer or spent
retries raise ``RemoteScorerError`` (a ``ScorerError``) naming the URL and what was wrong.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from typing import Any

import httpx

from ponder.retry import RetryPolicy, error_text, send
from ponder.scoring.base import ScorerError, Scores, question_text, register_scorer
from ponder.types import Problem, Usage

__all__ = ["MODES", "QWEN_PRM_TEMPLATE", "RemoteScorer", "RemoteScorerError"]

MODES = ("pooling", "classify", "generic")
AGGREGATES = ("last", "min", "mean", "prod")

QWEN_PRM_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
QWEN_PRM_TEMPLATE = (
    "<|im_start|>system\n{system}<|im_end|>\n"
    "<|im_start|>user\n{question}<|im_end|>\n"
    "<|im_start|>assistant\n{response}<|im_end|><|endoftext|>"
)
"""Qwen2.5-Math-PRM's chat markup; ``{response}`` is the steps, each followed by the tag."""

_BODY_EXCERPT = 300


class RemoteScorerError(ScorerError):
    """A reward-model endpoint failed, refused the request, or answered nonsense."""


class RemoteScorer:
    """Scores candidates (outcome) and partial solutions (process) with a remote model."""

    def __init__(
        self,
        url: str,
        model: str | None = None,
        mode: str = "pooling",
        *,
        label: int = 1,
        aggregate: str = "last",
        step_delimiter: str = "\n\n",
        step_tag: str = "<extra_0>",
        prompt_template: str = QWEN_PRM_TEMPLATE,
        system: str = QWEN_PRM_SYSTEM,
        extra_body: dict[str, Any] | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_connections: int = 8,
        batch_size: int = 32,
        headers: dict[str, str] | None = None,
    ) -> None:
        if not url or not url.startswith(("http://", "https://")):
            raise ValueError(f"the remote scorer needs url='http(s)://host:port...', got {url!r}")
        if mode not in MODES:
            raise ValueError(f"unknown remote scorer mode {mode!r}; expected one of {MODES}")
        if aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
        if label < 0:
            raise ValueError(f"label must be >= 0, got {label}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if max_connections < 1 or batch_size < 1:
            raise ValueError(
                f"max_connections and batch_size must be >= 1, got {max_connections}, {batch_size}"
            )
        if mode == "pooling" and not all(
            f in prompt_template for f in ("{question}", "{response}")
        ):
            raise ValueError("prompt_template needs the fields {question} and {response}")
        if not step_delimiter:
            raise ValueError("step_delimiter must be non-empty")
        base = url.rstrip("/")
        if mode != "generic":
            base = base.removesuffix("/v1")
            base = base if base.endswith(f"/{mode}") else f"{base}/{mode}"
        self.name = f"remote-{mode}"
        self.url = base
        self.model = model
        self.mode = mode
        self.label = label
        self.aggregate = aggregate
        self.step_delimiter = step_delimiter
        self.step_tag = step_tag
        self.prompt_template = prompt_template
        self.system = system
        self.extra_body = dict(extra_body or {})
        self.timeout = timeout
        self.policy = RetryPolicy(retries, backoff)
        self.batch_size = batch_size
        self.limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self.headers = dict(headers or {})
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    # ---- the scorer protocols ------------------------------------------------------------

    async def score(self, problem: Problem, candidates: Sequence[str]) -> Scores:
        """One score per candidate: the reward model's verdict on the whole solution."""
        steps = [self._split(text) for text in candidates]
        return await self._score(problem, steps, outcome=True)

    async def score_steps(self, problem: Problem, partials: Sequence[Sequence[str]]) -> Scores:
        """One score per partial solution: the reward of its last step."""
        steps = []
        for index, partial in enumerate(partials):
            cleaned = [s.strip() for s in partial if s.strip()]
            if not cleaned:
                raise ValueError(f"partial solution {index} has no steps to score")
            steps.append(cleaned)
        return await self._score(problem, steps, outcome=False)

    async def aclose(self) -> None:
        """Close the HTTP client (a later call opens a new one)."""
        client, self._client, self._client_loop = self._client, None, None
        if client is not None:
            await client.aclose()

    # ---- batching and wire formats -------------------------------------------------------

    async def _score(self, problem: Problem, steps: list[list[str]], outcome: bool) -> Scores:
        if not steps:
            return Scores((), Usage())
        started = time.perf_counter()
        batches = [steps[i : i + self.batch_size] for i in range(0, len(steps), self.batch_size)]
        results = await asyncio.gather(*(self._batch(problem, b, outcome) for b in batches))
        values = [v for batch in results for v in batch]
        usage = Usage(scorer_calls=len(steps), seconds=time.perf_counter() - started)
        return Scores(tuple(values), usage)

    async def _batch(self, problem: Problem, steps: list[list[str]], outcome: bool) -> list[float]:
        if self.mode == "generic":
            body: dict[str, Any] = {"problem": _problem_json(problem)}
            if outcome:
                body["candidates"] = [self.step_delimiter.join(s) for s in steps]
            else:
                body["partials"] = steps
            answer = await self._post(body)
            return self._generic_scores(answer, len(steps))
        question = question_text(problem)
        body = {"input": [self._prompt(question, s) for s in steps], **self.extra_body}
        if self.model:
            body["model"] = self.model
        answer = await self._post(body)
        items = self._items(answer, len(steps))
        if self.mode == "classify":
            return [self._class_probability(item, i) for i, item in enumerate(items)]
        values = []
        for i, (item, item_steps) in enumerate(zip(items, steps, strict=True)):
            rewards = self._step_rewards(item, i, len(item_steps))
            values.append(self._aggregate(rewards) if outcome else rewards[-1])
        return values

    def _split(self, text: str) -> list[str]:
        steps = [s.strip() for s in text.split(self.step_delimiter) if s.strip()]
        return steps or [text.strip()]

    def _prompt(self, question: str, steps: list[str]) -> str:
        if self.mode == "classify":
            response = self.step_delimiter.join(steps)
        else:
            response = "".join(step + self.step_tag for step in steps)
        return self.prompt_template.format(system=self.system, question=question, response=response)

    def _aggregate(self, rewards: list[float]) -> float:
        if self.aggregate == "last":
            return rewards[-1]
        if self.aggregate == "min":
            return min(rewards)
        if self.aggregate == "mean":
            return sum(rewards) / len(rewards)
        return math.prod(rewards)

    # ---- response parsing ----------------------------------------------------------------

    def _bad(self, what: str, answer: Any) -> RemoteScorerError:
        excerpt = repr(answer)[:_BODY_EXCERPT]
        return RemoteScorerError(f"{self.url} ({self.mode}): {what}; the answer was {excerpt}")

    def _items(self, answer: Any, expected: int) -> list[dict[str, Any]]:
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
            raise self._bad("expected {'data': [{...}, ...]}", answer)
        if len(data) != expected:
            raise self._bad(f"expected {expected} results, got {len(data)}", answer)
        if all(isinstance(d.get("index"), int) for d in data):
            data = sorted(data, key=lambda d: d["index"])
        return data

    def _number(self, value: Any, answer: Any) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self._bad(f"expected a finite number, got {value!r}", answer)
        return float(value)

    def _pick(self, row: Any, answer: Any) -> float:
        """The reward in one row: a number, or ``row[label]`` of a class-probability list."""
        if isinstance(row, list):
            if len(row) == 1:
                return self._number(row[0], answer)
            if self.label >= len(row):
                raise self._bad(f"label {self.label} is out of range for {len(row)} classes", row)
            return self._number(row[self.label], answer)
        return self._number(row, answer)

    def _step_rewards(self, item: dict[str, Any], index: int, n_steps: int) -> list[float]:
        rows = item.get("data")
        if not isinstance(rows, list):
            rows = [rows]
        if len(rows) != n_steps:
            raise self._bad(
                f"result {index}: expected one reward per step ({n_steps}), got {len(rows)}; "
                f"is {self.step_tag!r} the model's step tag (a single special token)?",
                item,
            )
        return [self._pick(row, item) for row in rows]

    def _class_probability(self, item: dict[str, Any], index: int) -> float:
        probs = item.get("probs")
        if not isinstance(probs, list) or not probs:
            raise self._bad(f"result {index}: expected 'probs': [...]", item)
        return self._pick(probs, item)

    def _generic_scores(self, answer: Any, expected: int) -> list[float]:
        scores = answer.get("scores") if isinstance(answer, dict) else None
        if not isinstance(scores, list):
            raise self._bad("expected {'scores': [float, ...]}", answer)
        if len(scores) != expected:
            raise self._bad(f"expected {expected} scores, got {len(scores)}", answer)
        return [self._number(s, answer) for s in scores]

    # ---- HTTP ----------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        """This event loop's client (a client cannot move between loops)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop or self._client.is_closed:
            self._client = httpx.AsyncClient(
                limits=self.limits, timeout=httpx.Timeout(self.timeout), headers=self.headers
            )
            self._client_loop = loop
        return self._client

    async def _post(self, body: dict[str, Any]) -> Any:
        """POST ``body`` under the retry policy; the JSON answer."""
        client = self._http()

        async def attempt() -> httpx.Response:
            return await send(client, "POST", self.url, body, RemoteScorerError)

        response = await self.policy.run(attempt, "the reward model", RemoteScorerError)
        if response.status_code >= 400:
            raise RemoteScorerError(
                f"{self.url}: HTTP {response.status_code}: {error_text(response)[:_BODY_EXCERPT]}"
            )
        try:
            return response.json()
        except ValueError:
            raise self._bad("the answer is not JSON", response.text) from None


def _problem_json(problem: Problem) -> dict[str, Any]:
    return {
        "id": problem.id,
        "question": question_text(problem),
        "messages": list(problem.messages),
    }


@register_scorer(
    "remote",
    "a reward model over HTTP: vLLM /pooling (PRMs such as Qwen2.5-Math-PRM), /classify, or "
    "a generic JSON endpoint (options: url, model, mode)",
)
def _make_remote(engine: Any, **options: Any) -> RemoteScorer:
    if "url" not in options:
        raise ValueError(
            "the remote scorer needs url=...; e.g. create_scorer('remote', url="
            "'http://localhost:8000', model='Qwen/Qwen2.5-Math-PRM-7B', mode='pooling')"
        )
    return RemoteScorer(**options)
