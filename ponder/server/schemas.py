"""Turning an OpenAI-style request body into a validated run, with OpenAI-style errors.

One pydantic schema (``ChatBody``, ``TextBody``) checks every field's type and range;
a strategy's own settings (``ponder.config``) are checked against its config's field
types. The strategy comes from the model name (``ponder``, ``ponder/<strategy>``,
``ponder/<strategy>@<budget>``) or from the body's ``ponder`` field
(``{"strategy", "budget", "config", "scorer"}``), which wins where both say something.
The request's sampling fields (temperature, top_p, seed, max_tokens) become strategy
settings where the strategy's config has them. A run of a strategy that takes a seed
and was given none (or ``-1``) gets a fresh random one, recorded in its config.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import secrets
import typing
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, create_model
from pydantic import field_validator as validator

from ponder.engines.llamacpp import grammar
from ponder.scoring import scorer_names
from ponder.server.settings import ServerSettings
from ponder.strategies import canonical, create, names
from ponder.types import Budget, Message, Problem, ResponseFormat

MODEL_PREFIX = "ponder"
PONDER_KEYS = ("strategy", "budget", "config", "scorer")
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p", "seed")
ONE_SAMPLE = ("greedy", "sample")
"""Strategies whose answer is one sampled completion: they honour ``logprobs`` and
continue a trailing assistant message (``continue_final_message``)."""
FORMAT_REFUSED = (
    "answer-convergence",
    "auto",
    "fusion",
    "generate-rank-fuse",
    "pairwise-rank",
    "self-refine",
)
"""Strategies that also ask the model for text other than the answer (critiques,
rankings, verdicts, answer cues): ``response_format``, imposed on every call of a run,
would constrain those too, so they refuse it."""
NEEDS_OUTCOME_SCORER = ("best-of-n", "weighted-best-of-n", "best-of-majority")
NEEDS_PROCESS_SCORER = ("beam-search", "dvts", "astar", "particle-filter", "particle-gibbs")
SCORER_HINT = (
    'set one in the body, e.g. "ponder": {"scorer": "judge"}, or start the server with '
    "a default scorer (ponder serve --scorer judge)"
)
MAX_STOP = 16
IGNORED_FIELDS = ("user", "metadata", "store", "service_tier", "parallel_tool_calls")
"""OpenAI fields accepted and ignored by design: they do not change the answer."""
ROLES = ("system", "user", "assistant")
RANDOM_SEED = -1
"""A ``seed`` of -1 (or none) asks for a fresh random seed, as in llama.cpp and Ollama."""
SEED_BITS = 31
"""Fresh random seeds are drawn from ``[0, 2**SEED_BITS)``."""
MISSING_HINTS = {
    "model": " (e.g. 'ponder/self-consistency@8')",
    "messages": ": a non-empty list of chat messages",
    "prompt": ": one non-empty string",
}


class ApiError(Exception):
    """An error answered as ``{"error": {"message", "type", "param", "code"}}`` with
    ``status``; ``param`` names the request field at fault, or is None."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        code: str | None = None,
        headers: dict[str, str] | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.headers = headers or {}
        self.param = param

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def bad_request(message: str, code: str = "invalid_request", param: str | None = None) -> ApiError:
    return ApiError(400, message, "invalid_request_error", code, param=param)


# ---- the request schema -------------------------------------------------------------

Temperature = Annotated[float, Strict(), Field(ge=0, le=2, allow_inf_nan=False)]
TopP = Annotated[float, Strict(), Field(gt=0, le=1, allow_inf_nan=False)]
Seed = Annotated[int, Strict(), Field(ge=RANDOM_SEED, le=2**63 - 1)]
PositiveInt = Annotated[int, Strict(), Field(ge=1)]
Name = Annotated[str, Strict(), Field(min_length=1)]


class ChatMessage(BaseModel):
    """One chat message; its content is text or a list of text parts."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant"]
    content: Any = None

    @validator("content")
    @classmethod
    def _text(cls, value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            parts = []
            for part in value:
                if not isinstance(part, dict) or part.get("type") != "text":
                    raise ValueError("only text content parts are supported")
                text = part.get("text", "")
                if not isinstance(text, str):
                    raise ValueError("a text part's 'text' must be a string")
                parts.append(text)
            return "".join(parts)
        raise ValueError("must be text or a list of text parts")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: Annotated[bool, Strict()] = False


class StrategySettings(BaseModel):
    """``ponder.config``: any strategy setting; the sampling ones checked as in the body
    (each strategy's config checks the rest)."""

    model_config = ConfigDict(extra="allow")

    temperature: Temperature | None = None
    top_p: TopP | None = None
    seed: Seed | None = None
    max_tokens: PositiveInt | None = None


class PonderOptions(BaseModel):
    """The body's ``ponder`` field."""

    model_config = ConfigDict(extra="forbid")

    strategy: Name | None = None
    budget: PositiveInt | None = None
    config: StrategySettings | None = None
    scorer: Name | None = None


class _Body(BaseModel):
    """The fields shared by chat and text completion requests. A field ponder does not
    know is refused by name; the ones that would change the answer in a way ponder cannot
    (tools, penalties, biases) are refused by name when set; ``IGNORED_FIELDS`` are
    accepted and ignored by design. ``response_format`` (``json_object``,
    ``json_schema``) constrains every sample of the run to the format."""

    model_config = ConfigDict(extra="forbid")

    model: Name
    temperature: Temperature | None = None
    top_p: TopP | None = None
    top_k: Annotated[int, Strict(), Field(ge=0)] | None = None
    min_p: Annotated[float, Strict(), Field(ge=0, lt=1, allow_inf_nan=False)] | None = None
    seed: Seed | None = None
    stop: Annotated[str, Strict(), Field(min_length=1)] | list[Name] | None = None
    top_logprobs: Annotated[int, Strict(), Field(ge=0, le=20)] | None = None
    response_format: dict[str, Any] | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    function_call: Any = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2, allow_inf_nan=False)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2, allow_inf_nan=False)] | None = None
    logit_bias: dict[str, Any] | None = None
    user: Any = None
    metadata: Any = None
    store: Any = None
    service_tier: Any = None
    parallel_tool_calls: Any = None
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    n: PositiveInt | None = None
    stream: Annotated[bool, Strict()] = False
    stream_options: StreamOptions | None = None
    ponder: PonderOptions | None = None


class ChatBody(_Body):
    """``POST /v1/chat/completions``. ``continue_final_message`` (or
    ``add_generation_prompt: false``), as vLLM takes them, continue a trailing assistant
    message instead of answering after it."""

    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    logprobs: Annotated[bool, Strict()] | None = None
    continue_final_message: Annotated[bool, Strict()] = False
    add_generation_prompt: Annotated[bool, Strict()] = True
    include_stop_str_in_output: Annotated[bool, Strict()] = False
    prompt: Any = None
    """Accepted and ignored: the messages are the prompt (the same body may go to both
    endpoints)."""


class TextBody(_Body):
    """``POST /v1/completions``: the prompt is the user's message. ``logprobs`` is the
    number of alternatives per token, as in OpenAI's legacy API."""

    prompt: Any
    logprobs: Annotated[int, Strict(), Field(ge=0, le=20)] | None = None
    echo: Annotated[bool, Strict()] = False
    suffix: Any = None
    best_of: Annotated[int, Strict(), Field(ge=1)] | None = None
    messages: Any = None
    """Accepted and ignored: the prompt is the user's message."""

    @validator("prompt")
    @classmethod
    def _one_prompt(cls, value: Any) -> str:
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            raise ValueError(
                "must be one string: a list of prompts is not supported, send one "
                "request per prompt"
            )
        if not isinstance(value, str) or not value:
            raise ValueError("must be one non-empty string")
        return value


def schema_error(exc: ValidationError, prefix: str = "") -> ApiError:
    """The first schema violation as a 400 naming the field and what it must be."""
    err = exc.errors(include_url=False)[0]
    param = prefix + _path(err["loc"])
    kind, msg = err["type"], err["msg"]
    if kind == "missing":
        hint = MISSING_HINTS.get(param, "")
        return bad_request(f"missing field '{param}'{hint}", "missing", param)
    if kind == "extra_forbidden":
        head, _, key = param.rpartition(".")
        if not head:
            return bad_request(
                f"unknown field '{key}': ponder does not support it; the fields it takes "
                "are listed in docs/SERVER.md",
                "unsupported_field",
                param,
            )
        known = ", ".join(PONDER_KEYS) if head == "ponder" else "see the docs"
        return bad_request(
            f"field '{head}' has unknown key '{key}'; known: {known}", "unknown_field", param
        )
    what = msg.removeprefix("Value error, ").replace("Input should be", "must be")
    got = repr(err.get("input"))
    if len(got) > 60:
        got = got[:57] + "..."
    code = "invalid_type" if kind.endswith(("_type", "_parsing")) else "invalid_value"
    return bad_request(f"field '{param}' {what}, got {got}", code, param)


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out


# ---- from a body to a run -----------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """Everything needed to run one request: what to solve, how, and how to answer.
    ``seed`` is the strategy's seed (also in ``config``), None for a strategy without."""

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
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0
    partial: str = ""
    include_stop: bool = False
    response_format: ResponseFormat | None = None


def model_names(served: str = "") -> list[str]:
    """The model names ``/v1/models`` lists: the served model's own name (``served``,
    when there is one), ``ponder`` (both mean the server's default strategy), then one
    per registered strategy."""
    head = [served] if served and served != MODEL_PREFIX else []
    return head + [MODEL_PREFIX] + [f"{MODEL_PREFIX}/{name}" for name in names()]


def parse_model(model: str, served: str = "") -> tuple[str | None, int | None]:
    """``(strategy, budget)`` named by a model string; ``None`` where it names none.
    The served model's own name (``served``) means the server's defaults, as ``ponder``.

    >>> parse_model("ponder/self-consistency@8")
    ('self-consistency', 8)
    """
    if served and model == served:
        return None, None
    head, sep, rest = model.partition("/")
    if head != MODEL_PREFIX or (sep and not rest):
        also = f"{served!r}, " if served else ""
        raise ApiError(
            404,
            f"unknown model {model!r}: use {also}'ponder', 'ponder/<strategy>' or "
            f"'ponder/<strategy>@<budget>' with a strategy from: {', '.join(names())}",
            "invalid_request_error",
            "model_not_found",
            param="model",
        )
    if not sep:
        return None, None
    name, at, budget_text = rest.partition("@")
    budget = None
    if at:
        if not (budget_text.isascii() and budget_text.isdigit()):
            raise bad_request(
                f"model {model!r}: the budget after '@' must be a positive integer",
                "invalid_budget",
                "model",
            )
        budget = int(budget_text)
    try:
        strategy = canonical(name)
    except ValueError as exc:
        raise ApiError(
            404,
            f"model {model!r}: {exc}",
            "invalid_request_error",
            "model_not_found",
            param="model",
        ) from None
    return strategy, budget


def parse_run(body: Any, kind: str, settings: ServerSettings) -> RunSpec:
    """Validate a chat (``kind="chat"``) or text completion request body."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    body = _merge_extra_body(body)
    try:
        req = (ChatBody if kind == "chat" else TextBody).model_validate(body)
    except ValidationError as exc:
        raise schema_error(exc) from None
    strategy, budget = parse_model(req.model, settings.model)
    _refuse_unsupported(req)
    response_format = _response_format(req.response_format)
    partial = ""
    if isinstance(req, ChatBody):
        messages: tuple[Message, ...] = tuple(
            {"role": m.role, "content": m.content} for m in req.messages
        )
        if req.continue_final_message or not req.add_generation_prompt:
            messages, partial = _final_message(req, messages)
    else:
        messages = ({"role": "user", "content": req.prompt},)
    ponder = req.ponder or PonderOptions()
    if ponder.strategy is not None:
        try:
            strategy = canonical(ponder.strategy)
        except ValueError as exc:
            raise bad_request(str(exc), "unknown_strategy", "ponder.strategy") from None
    strategy = strategy or canonical(settings.default_strategy)
    budget = ponder.budget or budget
    budget = settings.default_budget if budget is None else budget
    if budget < 1:
        raise bad_request(f"budget must be >= 1, got {budget}", "invalid_budget", "model")
    if budget > settings.max_budget:
        raise bad_request(
            f"budget {budget} exceeds this server's limit of {settings.max_budget}",
            "budget_too_large",
            "ponder.budget" if ponder.budget else "model",
        )
    if req.n is not None and req.n != 1:
        raise bad_request(
            "n must be 1: ponder returns one chosen answer; spend more samples with the budget",
            "invalid_n",
            "n",
        )
    config, max_tokens = _config(req, ponder, strategy, settings)
    if ponder.scorer is not None and ponder.scorer not in scorer_names():
        raise bad_request(
            f"unknown scorer {ponder.scorer!r}; known: {', '.join(scorer_names())}",
            "unknown_scorer",
            "ponder.scorer",
        )
    _check_scorer(strategy, config, ponder.scorer or settings.scorer)
    logprobs, top_logprobs = _logprobs(req)
    include_stop = isinstance(req, ChatBody) and req.include_stop_str_in_output
    for what, used, param in (
        ("logprobs", logprobs, "logprobs"),
        ("continue_final_message", bool(partial), "messages"),
        ("include_stop_str_in_output", include_stop, "include_stop_str_in_output"),
    ):
        if used and strategy not in ONE_SAMPLE:
            raise bad_request(
                f"{what} needs a strategy whose answer is one sample ({', '.join(ONE_SAMPLE)}); "
                f"{strategy!r} builds its answer from several",
                "unsupported_for_strategy",
                param,
            )
    if response_format is not None and strategy in FORMAT_REFUSED:
        raise bad_request(
            f"response_format needs a strategy whose every model call writes the answer; "
            f"{strategy!r} also asks the model for other text (critiques, rankings or "
            "verdicts), which the format would constrain too",
            "unsupported_for_strategy",
            "response_format",
        )
    stop = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
    if len(stop) > MAX_STOP:
        raise bad_request(f"at most {MAX_STOP} stop strings, got {len(stop)}", param="stop")
    run_id = uuid.uuid4().hex[:16]
    return RunSpec(
        id=run_id,
        kind=kind,
        model=req.model,
        problem=Problem(id=run_id, messages=messages),
        strategy=strategy,
        budget=Budget(n=budget, max_tokens=max_tokens or settings.max_tokens),
        config=config,
        scorer=ponder.scorer,
        stream=req.stream,
        include_usage=bool(req.stream_options and req.stream_options.include_usage),
        seed=config.get("seed"),
        stop=stop,
        logprobs=logprobs,
        top_logprobs=top_logprobs,
        partial=partial,
        include_stop=include_stop,
        response_format=response_format,
    )


def _merge_extra_body(body: dict[str, Any]) -> dict[str, Any]:
    """The body with the fields of a literal ``extra_body`` object (sent by clients that
    build the openai SDK's arguments by hand, such as its_hub) merged in; a field given
    both ways must agree."""
    extra = body.get("extra_body")
    if extra is None:
        return body
    if not isinstance(extra, dict):
        raise bad_request("field 'extra_body' must be an object", "invalid_type", "extra_body")
    merged = {k: v for k, v in body.items() if k != "extra_body"}
    for key, value in extra.items():
        if key in merged and merged[key] != value:
            raise bad_request(
                f"field {key!r} is given twice, differently, in the body and in extra_body",
                "invalid_value",
                f"extra_body.{key}",
            )
        merged[key] = value
    return merged


def _refuse_unsupported(req: _Body) -> None:
    """A 400 naming the first field set to something ponder cannot honour."""
    for name in ("tools", "functions"):
        if getattr(req, name):
            raise bad_request(
                f"{name} are not supported: ponder does not call tools", "unsupported_field", name
            )
    for name in ("tool_choice", "function_call"):
        if getattr(req, name) not in (None, "none"):
            raise bad_request(
                f"{name} is not supported: ponder does not call tools", "unsupported_field", name
            )
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(req, name):
            raise bad_request(
                f"{name} is not supported (only 0): the sampler has no penalties",
                "unsupported_field",
                name,
            )
    if req.logit_bias:
        raise bad_request(
            "logit_bias is not supported: the sampler has no biases",
            "unsupported_field",
            "logit_bias",
        )
    if isinstance(req, TextBody):
        if req.echo:
            raise bad_request("echo is not supported", "unsupported_field", "echo")
        if req.suffix:
            raise bad_request("suffix is not supported", "unsupported_field", "suffix")
        if req.best_of not in (None, 1):
            raise bad_request(
                "best_of is not supported: choose a strategy and budget instead, e.g. "
                "model 'ponder/best-of-n@4'",
                "unsupported_field",
                "best_of",
            )


def _response_format(fmt: dict[str, Any] | None) -> ResponseFormat | None:
    """The format every sample must take: None for ``text``; ``json_object`` (with a
    ``schema``, as llama.cpp's server takes it, that schema); ``json_schema`` with its
    ``json_schema.schema``. A 400 naming the field at fault, the schema's included when
    llama.cpp's grammar converter cannot handle it."""
    if fmt is None:
        return None
    kind = fmt.get("type")
    if kind is None:
        raise bad_request(
            "missing field 'response_format.type' (text, json_object or json_schema)",
            "missing",
            "response_format.type",
        )
    if kind == "text":
        return None
    param = "response_format.schema"
    spec: dict[str, Any] = {}
    if kind == "json_object":
        schema = fmt.get("schema")
    elif kind == "json_schema":
        given = fmt.get("json_schema")
        if not isinstance(given, dict):
            raise bad_request(
                "field 'response_format.json_schema' must be an object with the 'schema'",
                "invalid_type" if given is not None else "missing",
                "response_format.json_schema",
            )
        spec, param = given, "response_format.json_schema.schema"
        schema = spec.get("schema")
        if schema is None:
            raise bad_request(f"missing field '{param}': the JSON Schema", "missing", param)
    else:
        raise bad_request(
            f"field 'response_format.type' must be text, json_object or json_schema, got "
            f"{kind!r}",
            "invalid_value",
            "response_format.type",
        )
    if schema is not None and not isinstance(schema, dict):
        raise bad_request(f"field '{param}' must be a JSON Schema object", "invalid_type", param)
    name, strict = spec.get("name"), spec.get("strict")
    try:
        out = (
            ResponseFormat("json_object")
            if schema is None
            else ResponseFormat(
                "json_schema",
                json.dumps(schema),
                name if isinstance(name, str) and name else "output",
                strict if isinstance(strict, bool) else None,
            )
        )
        grammar.check(out)
    except ValueError as exc:
        raise bad_request(f"field '{param}': {exc}", "invalid_schema", param) from None
    return out


def _final_message(req: ChatBody, messages: tuple[Message, ...]) -> tuple[tuple[Message, ...], str]:
    """The messages before a trailing assistant message, and that message's text (which
    the answer continues)."""
    if messages[-1]["role"] != "assistant":
        field = "continue_final_message" if req.continue_final_message else "add_generation_prompt"
        raise bad_request(
            f"{field} continues a trailing assistant message, and the last message is "
            f"from {messages[-1]['role']!r}",
            "invalid_value",
            field,
        )
    if len(messages) < 2:
        raise bad_request(
            "continue_final_message needs a message before the assistant's",
            "invalid_value",
            "messages",
        )
    return messages[:-1], str(messages[-1]["content"] or "")


def _logprobs(req: _Body) -> tuple[bool, int]:
    """Whether the answer's token log-probabilities were asked for, and how many
    alternatives per token."""
    asked = getattr(req, "logprobs", None)
    if req.top_logprobs and asked in (None, False):
        raise bad_request("top_logprobs needs logprobs", "invalid_value", "top_logprobs")
    if isinstance(req, TextBody):
        return asked is not None, max(asked or 0, req.top_logprobs or 0)
    return bool(asked), req.top_logprobs or 0


def _check_scorer(strategy: str, config: dict[str, Any], scorer: str | None) -> None:
    """A 400 now, before any stream starts, when ``strategy`` needs a scorer and none
    was given (in the body or as the server's default)."""
    if scorer is not None:
        return
    needs = strategy in NEEDS_OUTCOME_SCORER or strategy in NEEDS_PROCESS_SCORER
    if strategy == "weighted-vote" and config.get("weight") == "score":
        needs = True
    if needs:
        raise bad_request(
            f"strategy {strategy!r} needs a scorer; {SCORER_HINT}; known scorers: "
            f"{', '.join(scorer_names())}",
            "scorer_required",
            "ponder.scorer",
        )


def _config(
    req: _Body, ponder: PonderOptions, strategy: str, settings: ServerSettings
) -> tuple[dict[str, Any], int | None]:
    """The strategy settings (request sampling fields the config has, then
    ``ponder.config``, a fresh seed where none was given) and the per-sample token cap
    the request asked for, if any."""
    config_cls = create(strategy).config.__class__  # type: ignore[attr-defined]
    known = {f.name for f in dataclasses.fields(config_cls)}
    config: dict[str, Any] = {}
    for key in SAMPLING_FIELDS:
        if getattr(req, key) is not None and key in known:
            config[key] = getattr(req, key)
    max_tokens = req.max_completion_tokens or req.max_tokens
    if max_tokens is not None and "max_tokens" in known:
        config["max_tokens"] = max_tokens
    if ponder.config is not None:
        config.update(ponder.config.model_dump(exclude_unset=True))
    if "max_tokens" in config:
        max_tokens = config["max_tokens"]
    if max_tokens is not None and max_tokens > settings.max_tokens:
        raise bad_request(
            f"max_tokens {max_tokens} exceeds this server's limit of {settings.max_tokens}",
            "max_tokens_too_large",
            "max_tokens",
        )
    if "seed" in known and config.get("seed", RANDOM_SEED) in (None, RANDOM_SEED):
        config["seed"] = secrets.randbelow(2**SEED_BITS)
    unknown = sorted(set(config) - known)
    if unknown:
        raise bad_request(
            f"strategy {strategy!r} has no setting {', '.join(map(repr, unknown))}; "
            f"its settings are: {', '.join(sorted(known))}",
            "invalid_config",
            f"ponder.config.{unknown[0]}",
        )
    try:
        _settings_schema(config_cls).model_validate_json(json.dumps(config))
    except ValidationError as exc:
        raise schema_error(exc, "ponder.config.") from None
    try:
        create(strategy, **config)
    except Exception as exc:
        raise bad_request(str(exc), "invalid_config", "ponder.config") from None
    return config, max_tokens


@functools.cache
def _settings_schema(config_cls: type[Any]) -> type[BaseModel]:
    """A strict schema of a strategy config's fields (every one optional), so that a
    setting of the wrong type is refused with its name before the strategy sees it."""
    try:
        hints = typing.get_type_hints(config_cls)
    except Exception:
        hints = {}
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(config_cls):
        fields[f.name] = (hints.get(f.name, Any), None)
    try:
        return create_model(
            f"{config_cls.__name__}Schema",
            __config__=ConfigDict(strict=True, allow_inf_nan=False, extra="forbid"),
            **fields,
        )
    except Exception:
        untyped: dict[str, Any] = dict.fromkeys(fields, (Any, None))
        return create_model(
            f"{config_cls.__name__}Schema", __config__=ConfigDict(extra="forbid"), **untyped
        )
