"""Core value types shared by every layer. Frozen dataclasses, no I/O."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

Message = dict[str, str]
"""A chat message: ``{"role": "user" | "system" | "assistant", "content": "..."}``."""


@dataclass(frozen=True)
class SamplingParams:
    """How one continuation is sampled.

    ``temperature == 0`` means greedy (argmax). ``top_k == 0``, ``top_p == 1`` and
    ``min_p == 0`` disable those filters. ``seed`` fixes the per-sequence random
    generator: sample ``i`` of a request with seed ``s`` uses the stream ``(s, i)``.
    ``logprobs`` asks for the log-probability of each sampled token under the model's
    raw distribution (temperature 1, no truncation) and, when ``top_logprobs > 0``, the
    ``top_logprobs`` most likely alternatives at each position. ``ignore_eos`` never
    samples an end-of-generation token (fixed-length output, for benchmarks).
    """

    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 disables it), got {self.top_k}")
        if not 0 <= self.min_p < 1:
            raise ValueError(f"min_p must be in [0, 1), got {self.min_p}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if not 0 <= self.top_logprobs <= 20:
            raise ValueError(f"top_logprobs must be in [0, 20], got {self.top_logprobs}")
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        if any(not s for s in self.stop):
            raise ValueError("stop strings must be non-empty")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def with_(self, **changes: Any) -> SamplingParams:
        return replace(self, **changes)


GREEDY = SamplingParams(temperature=0.0, top_p=1.0, top_k=0, min_p=0.0)

RESPONSE_FORMATS = ("json_object", "json_schema")


@dataclass(frozen=True)
class ResponseFormat:
    """A format every continuation must take, enforced while sampling.

    ``type`` is ``"json_object"`` (any JSON object) or ``"json_schema"`` (JSON valid
    against ``schema``, a JSON Schema given as JSON text, so that the value is hashable
    and keeps its property order). ``name`` and ``strict`` are passed on to a remote
    server as OpenAI's ``response_format.json_schema`` has them.
    """

    type: str
    schema: str | None = None
    name: str = "output"
    strict: bool | None = None

    def __post_init__(self) -> None:
        if self.type not in RESPONSE_FORMATS:
            raise ValueError(
                f"response format type must be one of {', '.join(RESPONSE_FORMATS)}, "
                f"got {self.type!r}"
            )
        if self.type == "json_object" and self.schema is not None:
            raise ValueError("a json_object format takes no schema (use json_schema)")
        if self.type == "json_schema":
            if self.schema is None:
                raise ValueError("a json_schema format needs a schema")
            try:
                parsed = json.loads(self.schema)
            except json.JSONDecodeError as exc:
                raise ValueError(f"the schema is not valid JSON: {exc}") from None
            if not isinstance(parsed, dict):
                raise ValueError(f"the schema must be a JSON object, got {self.schema[:40]!r}")

    @staticmethod
    def json_schema(schema: dict[str, Any], name: str = "output") -> ResponseFormat:
        """The format of JSON valid against ``schema``."""
        return ResponseFormat("json_schema", json.dumps(schema), name)

    def as_openai(self) -> dict[str, Any]:
        """OpenAI's ``response_format`` field for this format."""
        if self.type == "json_object":
            return {"type": "json_object"}
        spec: dict[str, Any] = {"name": self.name, "schema": json.loads(self.schema or "{}")}
        if self.strict is not None:
            spec["strict"] = self.strict
        return {"type": "json_schema", "json_schema": spec}


@dataclass(frozen=True)
class Request:
    """Continue ``prefix`` ``n`` times.

    ``prefix`` is either raw text (continued as is) or a list of chat messages, which
    the engine renders with the model's chat template and opens an assistant turn. For
    chat prefixes, ``partial`` is text the assistant has already written: the engine
    continues it (this is how step-level search extends a partial solution).
    ``response_format``, when set, constrains every continuation (``partial`` included:
    it must be a beginning of the format) to that format.
    """

    prefix: str | tuple[Message, ...]
    params: SamplingParams = field(default_factory=SamplingParams)
    n: int = 1
    partial: str = ""
    response_format: ResponseFormat | None = None

    def __post_init__(self) -> None:
        if isinstance(self.prefix, list):
            object.__setattr__(self, "prefix", tuple(self.prefix))
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if isinstance(self.prefix, tuple):
            for m in self.prefix:
                if not isinstance(m, dict) or "role" not in m or "content" not in m:
                    raise ValueError(f"chat messages need 'role' and 'content', got {m!r}")
        elif not isinstance(self.prefix, str):
            raise ValueError(f"prefix must be text or chat messages, got {type(self.prefix)}")


@dataclass(frozen=True)
class TokenLogprob:
    """The sampled token's log-probability, with the most likely alternatives."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Usage:
    """What some work cost. Adds up with ``+``.

    ``prompt_tokens_computed`` counts prompt tokens the engine actually ran through the
    model; ``prompt_tokens_cached`` counts prompt tokens whose KV state it reused.
    """

    tokens_generated: int = 0
    prompt_tokens_computed: int = 0
    prompt_tokens_cached: int = 0
    engine_calls: int = 0
    scorer_calls: int = 0
    seconds: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def prompt_tokens(self) -> int:
        return self.prompt_tokens_computed + self.prompt_tokens_cached

    @property
    def cache_hit_rate(self) -> float:
        total = self.prompt_tokens
        return self.prompt_tokens_cached / total if total else 0.0

    def as_dict(self) -> dict[str, float]:
        d: dict[str, float] = {f.name: getattr(self, f.name) for f in fields(self)}
        d["cache_hit_rate"] = round(self.cache_hit_rate, 4)
        return d

    @staticmethod
    def total(items: Sequence[Usage]) -> Usage:
        out = Usage()
        for u in items:
            out = out + u
        return out


@dataclass(frozen=True)
class Completion:
    """One continuation of a request's prefix."""

    text: str
    tokens: int
    finish_reason: str  # "stop" (end of turn or stop string), "length", "error"
    usage: Usage
    logprobs: tuple[TokenLogprob, ...] | None = None
    prompt_tokens: int = 0
    stop_reason: str | None = None
    """The stop string that ended the text (not included in it); None for end of turn."""

    @property
    def mean_logprob(self) -> float | None:
        if not self.logprobs:
            return None
        return sum(t.logprob for t in self.logprobs) / len(self.logprobs)


@dataclass(frozen=True)
class Budget:
    """The knob a user turns: how many samples / particles / beams, plus hard caps.

    ``max_tokens`` caps *one* sample (one solution, as an API request's ``max_tokens``
    does); it never bounds the run as a whole. ``total_tokens`` is the search budget of
    the whole run, read by the strategies whose spending is open-ended (``astar``); the
    others spend at most ``n`` times the per-sample cap by construction.
    """

    n: int = 1
    max_tokens: int | None = None
    max_seconds: float | None = None
    total_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"budget must be >= 1, got {self.n}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens cap must be >= 1, got {self.max_tokens}")
        if self.total_tokens is not None and self.total_tokens < 1:
            raise ValueError(f"total_tokens budget must be >= 1, got {self.total_tokens}")


@dataclass(frozen=True)
class Problem:
    """Something to solve: a question as chat messages, with an optional reference."""

    id: str
    messages: tuple[Message, ...]
    reference: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def from_question(question: str, system: str | None = None, id: str = "q") -> Problem:
        msgs: list[Message] = []
        if system:
            msgs.append({"role": "system", "content": system})
        msgs.append({"role": "user", "content": question})
        return Problem(id=id, messages=tuple(msgs))


@dataclass(frozen=True)
class Candidate:
    """One candidate solution with the answer extracted from it and its evidence."""

    text: str
    answer: str | None
    tokens: int
    votes: int = 0
    score: float | None = None
    mean_logprob: float | None = None
    finish_reason: str = "stop"


@dataclass(frozen=True)
class Result:
    """What a strategy returns: the answer, the evidence behind it, and its cost."""

    answer: str | None
    best: Candidate | None
    candidates: tuple[Candidate, ...]
    usage: Usage
    strategy: str
    trace: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "strategy": self.strategy,
            "best": None if self.best is None else _candidate_dict(self.best),
            "candidates": [_candidate_dict(c) for c in self.candidates],
            "usage": self.usage.as_dict(),
            "trace": self.trace,
        }


def _candidate_dict(c: Candidate) -> dict[str, Any]:
    return {f.name: getattr(c, f.name) for f in fields(c)}
