"""OpenAI-shaped response bodies (completions, chunks, usage) and the ``ponder`` field."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from typing import Any

from ponder.server.schemas import RunSpec
from ponder.types import Completion, Result, TokenLogprob, Usage

CHUNK_WORDS = 8


def jsonable(value: Any) -> Any:
    """``value`` with non-finite floats as ``None`` (JSON has no NaN or infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def answer_of(result: Result, stop: tuple[str, ...] = (), kept: str = "") -> tuple[str, str]:
    """The reply text and its finish reason: the chosen candidate's full text, cut
    before the first of the client's ``stop`` strings (every sample already stops at
    them; a strategy that joins steps may not end on one), then ``kept`` (the stop
    string that ended it, when the client asked to keep it).

    When the strategy chose none (no sample had an extractable answer), the first
    candidate's text stands in and ``ponder.answer`` stays null.
    """
    chosen = result.best or (result.candidates[0] if result.candidates else None)
    if chosen is None:
        return "", "stop"
    text = chosen.text
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    if cuts:
        return text[: min(cuts)] + kept, "stop"
    return text + kept, "length" if chosen.finish_reason == "length" else "stop"


def _kept_stop(spec: RunSpec, chosen: Completion | None) -> str:
    """The client's stop string that ended the answer, when it asked to keep it
    (``include_stop_str_in_output``)."""
    if not spec.include_stop or chosen is None or chosen.stop_reason not in spec.stop:
        return ""
    return chosen.stop_reason or ""


def logprobs_body(spec: RunSpec, chosen: Completion | None) -> dict[str, Any] | None:
    """The answer's token log-probabilities in OpenAI's shape (chat: ``content`` with
    ``top_logprobs`` per token; text: the legacy parallel lists), None unless asked."""
    if not spec.logprobs or chosen is None or chosen.logprobs is None:
        return None
    tokens = chosen.logprobs
    if spec.kind == "chat":
        return {"content": [_token(t, spec.top_logprobs) for t in tokens], "refusal": None}
    offsets, at = [], 0
    for t in tokens:
        offsets.append(at)
        at += len(t.token)
    return {
        "tokens": [t.token for t in tokens],
        "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": [dict(t.top[: spec.top_logprobs]) for t in tokens],
        "text_offset": offsets,
    }


def _token(t: TokenLogprob, top: int) -> dict[str, Any]:
    def one(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

    return {**one(t.token, t.logprob), "top_logprobs": [one(k, v) for k, v in t.top[:top]]}


def usage_body(usage: Usage) -> dict[str, Any]:
    """OpenAI ``usage``: every prompt token (computed or cached) and every generated one."""
    prompt = usage.prompt_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": usage.tokens_generated,
        "total_tokens": prompt + usage.tokens_generated,
        "prompt_tokens_details": {"cached_tokens": usage.prompt_tokens_cached},
    }


def ponder_field(spec: RunSpec, result: Result) -> dict[str, Any]:
    """The evidence behind the answer: candidates, votes, scores, trace, usage, and the
    seed the run used (None for a strategy without one)."""
    body = result.as_dict()
    body.update(run_id=spec.id, budget=spec.budget.n, config=spec.config, seed=spec.seed)
    return jsonable(body)


def completion_body(
    spec: RunSpec, result: Result, created: int | None = None, chosen: Completion | None = None
) -> dict[str, Any]:
    """A ``chat.completion`` or ``text_completion`` carrying the chosen answer (and the
    log-probabilities of ``chosen``, the sample it is, when the request asked)."""
    text, finish = answer_of(result, spec.stop, _kept_stop(spec, chosen))
    logprobs = logprobs_body(spec, chosen)
    if spec.kind == "chat":
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": finish,
            "logprobs": logprobs,
        }
    else:
        choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": logprobs}
    return {
        **_head(spec, created, chunk=False),
        "choices": [choice],
        "usage": usage_body(result.usage),
        "ponder": ponder_field(spec, result),
    }


def stream_bodies(
    spec: RunSpec, result: Result, chosen: Completion | None = None
) -> Iterator[dict[str, Any]]:
    """The answer as a sequence of stream chunks.

    The text arrives in pieces of a few words, then a chunk with the finish reason, the
    answer's log-probabilities when asked, and the ``ponder`` field (extra fields are
    ignored by clients), then, when the request asked for
    ``stream_options.include_usage``, a usage chunk with no choices.
    """
    created = int(time.time())
    text, finish = answer_of(result, spec.stop, _kept_stop(spec, chosen))
    head = _head(spec, created, chunk=True)
    if spec.kind == "chat":
        yield {**head, "choices": [_delta(spec, {"role": "assistant", "content": ""})]}
    for piece in split_text(text):
        yield {**head, "choices": [_delta(spec, {"content": piece}, text=piece)]}
    end = _delta(spec, {}, finish=finish)
    end["logprobs"] = logprobs_body(spec, chosen)
    last = {
        **head,
        "choices": [end],
        "ponder": ponder_field(spec, result),
    }
    yield last
    if spec.include_usage:
        yield {**head, "choices": [], "usage": usage_body(result.usage)}


def split_text(text: str, words: int = CHUNK_WORDS) -> list[str]:
    """``text`` cut into pieces of ``words`` words (whitespace kept), joined back exactly."""
    parts = re.findall(r"\s*\S+|\s+$", text)
    return ["".join(parts[i : i + words]) for i in range(0, len(parts), words)]


def _head(spec: RunSpec, created: int | None, chunk: bool) -> dict[str, Any]:
    if spec.kind == "chat":
        obj = "chat.completion.chunk" if chunk else "chat.completion"
        prefix = "chatcmpl"
    else:
        obj, prefix = "text_completion", "cmpl"
    return {
        "id": f"{prefix}-{spec.id}",
        "object": obj,
        "created": created or int(time.time()),
        "model": spec.model,
    }


def _delta(
    spec: RunSpec, delta: dict[str, Any], finish: str | None = None, text: str = ""
) -> dict[str, Any]:
    if spec.kind == "chat":
        return {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
    return {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
