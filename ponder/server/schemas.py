"""Turning an OpenAI-style request body into a validated run, with OpenAI-style errors.

The strategy comes from the model name (``ponder``, ``ponder/<strategy>``,
``ponder/<strategy>@<budget>``) or from the body's ``ponder`` field
(``{"strategy", "budget", "config", "scorer"}``), which wins where both say something.
The request's sampling fields (temperature, top_p, seed, max_tokens) become strategy
settings where the strategy's config has them.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from typing import Any

from ponder.scoring import scorer_names
from ponder.server.settings import ServerSettings
from ponder.strategies import canonical, create, names
from ponder.types import Budget, Message, Problem

MODEL_PREFIX = "ponder"
PONDER_KEYS = ("strategy", "budget", "config", "scorer")
SAMPLING_FIELDS = ("temperature", "top_p", "seed")
ROLES = ("system", "user", "assistant")


class ApiError(Exception):
    """An error answered as ``{"error": {"message", "type", "code"}}`` with ``status``."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "code": self.code}}


def bad_request(message: str, code: str = "invalid_request") -> ApiError:
    return ApiError(400, message, "invalid_request_error", code)


@dataclass(frozen=True)
class RunSpec:
    """Everything needed to run one request: what to solve, how, and how to answer."""

    id: str
    kind: str  # "chat" or "text"
    model: str
    problem: Problem
    strategy: str
    budget: Budget
    config: dict[str, Any] = field(default_factory=dict)
    scorer: str | None = None
    stream: bool = False
    include_usage: bool = False


def model_names() -> list[str]:
    """The model names ``/v1/models`` lists: one per registered strategy."""
    return [f"{MODEL_PREFIX}/{name}" for name in names()]


def parse_model(model: str) -> tuple[str | None, int | None]:
    """``(strategy, budget)`` named by a model string; ``None`` where it names none.

    >>> parse_model("ponder/self-consistency@8")
    ('self-consistency', 8)
    """
    head, sep, rest = model.partition("/")
    if head != MODEL_PREFIX or (sep and not rest):
        raise ApiError(
            404,
            f"unknown model {model!r}: use 'ponder', 'ponder/<strategy>' or "
            f"'ponder/<strategy>@<budget>' with a strategy from: {', '.join(names())}",
            "invalid_request_error",
            "model_not_found",
        )
    if not sep:
        return None, None
    name, at, budget_text = rest.partition("@")
    budget = None
    if at:
        if not budget_text.isdigit():
            raise bad_request(
                f"model {model!r}: the budget after '@' must be a positive integer",
                "invalid_budget",
            )
        budget = int(budget_text)
    try:
        strategy = canonical(name)
    except ValueError as exc:
        raise ApiError(
            404, f"model {model!r}: {exc}", "invalid_request_error", "model_not_found"
        ) from None
    return strategy, budget


def parse_run(body: Any, kind: str, settings: ServerSettings) -> RunSpec:
    """Validate a chat (``kind="chat"``) or text completion request body."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("missing field 'model' (e.g. 'ponder/self-consistency@8')", "missing")
    strategy, budget = parse_model(model)
    if kind == "chat":
        messages = _messages(body.get("messages"))
    else:
        messages = ({"role": "user", "content": _prompt(body.get("prompt"))},)

    ponder = body.get("ponder") or {}
    if not isinstance(ponder, dict):
        raise bad_request("field 'ponder' must be an object with keys: " + ", ".join(PONDER_KEYS))
    unknown = sorted(set(ponder) - set(PONDER_KEYS))
    if unknown:
        raise bad_request(
            f"field 'ponder' has unknown keys {unknown}; known: {', '.join(PONDER_KEYS)}"
        )
    if ponder.get("strategy") is not None:
        try:
            strategy = canonical(str(ponder["strategy"]))
        except ValueError as exc:
            raise bad_request(str(exc), "unknown_strategy") from None
    strategy = strategy or canonical(settings.default_strategy)
    if ponder.get("budget") is not None:
        budget = _positive_int(ponder["budget"], "ponder.budget")
    budget = settings.default_budget if budget is None else budget
    if budget < 1:
        raise bad_request(f"budget must be >= 1, got {budget}", "invalid_budget")
    if budget > settings.max_budget:
        raise bad_request(
            f"budget {budget} exceeds this server's limit of {settings.max_budget}",
            "budget_too_large",
        )

    n = body.get("n")
    if n is not None and n != 1:
        raise bad_request(
            "n must be 1: ponder returns one chosen answer; spend more samples with the budget",
            "invalid_n",
        )
    config, max_tokens = _config(body, ponder.get("config"), strategy, settings)

    scorer = ponder.get("scorer")
    if scorer is not None and scorer not in scorer_names():
        raise bad_request(
            f"unknown scorer {scorer!r}; known: {', '.join(scorer_names())}", "unknown_scorer"
        )
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request("field 'stream' must be true or false")
    options = body.get("stream_options") or {}
    include_usage = bool(isinstance(options, dict) and options.get("include_usage"))
    run_id = uuid.uuid4().hex[:16]
    return RunSpec(
        id=run_id,
        kind=kind,
        model=model,
        problem=Problem(id=run_id, messages=messages),
        strategy=strategy,
        budget=Budget(n=budget, max_tokens=max_tokens or settings.max_tokens),
        config=config,
        scorer=scorer,
        stream=stream,
        include_usage=include_usage,
    )


def _config(
    body: dict[str, Any], extra: Any, strategy: str, settings: ServerSettings
) -> tuple[dict[str, Any], int | None]:
    """The strategy settings (request sampling fields the config has, then
    ``ponder.config``) and the per-sample token cap the request asked for, if any."""
    if extra is not None and not isinstance(extra, dict):
        raise bad_request("field 'ponder.config' must be an object of strategy settings")
    known = {f.name for f in dataclasses.fields(create(strategy).config)}  # type: ignore[attr-defined]
    config: dict[str, Any] = {}
    for key in SAMPLING_FIELDS:
        if body.get(key) is not None and key in known:
            config[key] = body[key]
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        max_tokens = _positive_int(max_tokens, "max_tokens")
        if "max_tokens" in known:
            config["max_tokens"] = max_tokens
    config.update(extra or {})
    if "max_tokens" in config:
        max_tokens = _positive_int(config["max_tokens"], "ponder.config.max_tokens")
    if max_tokens is not None and max_tokens > settings.max_tokens:
        raise bad_request(
            f"max_tokens {max_tokens} exceeds this server's limit of {settings.max_tokens}",
            "max_tokens_too_large",
        )
    try:
        create(strategy, **config)
    except ValueError as exc:
        raise bad_request(str(exc), "invalid_config") from None
    return config, max_tokens


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise bad_request(f"{name} must be a positive integer, got {value!r}")
    return value


def _messages(value: Any) -> tuple[Message, ...]:
    if not isinstance(value, list) or not value:
        raise bad_request("missing field 'messages': a non-empty list of chat messages", "missing")
    out: list[Message] = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise bad_request(f"messages[{i}] needs a 'role' in {ROLES}")
        out.append({"role": m["role"], "content": _content(m.get("content"), i)})
    return tuple(out)


def _content(value: Any, index: int) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for part in value:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise bad_request(f"messages[{index}]: only text content parts are supported")
            parts.append(str(part.get("text", "")))
        return "".join(parts)
    raise bad_request(f"messages[{index}] needs 'content': text or a list of text parts")


def _prompt(value: Any) -> str:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, str) or not value:
        raise bad_request("missing field 'prompt': one non-empty string", "missing")
    return value
