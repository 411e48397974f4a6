"""Request building: the HTTP generation calls for a ponder request, one per sample."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ponder.engines.base import EngineError
from ponder.engines.chat_template import ChatTemplate
from ponder.engines.openai.profiles import ServerProfile
from ponder.types import Request, ResponseFormat, SamplingParams

__all__ = ["Call", "build_calls", "format_field", "sample_seed"]


@dataclass(frozen=True)
class Call:
    """One HTTP generation call: sample ``index`` of a request."""

    path: str
    body: dict[str, Any]
    index: int
    params: SamplingParams
    logprobs_asked: bool  # the caller asked for logprobs (else they served stop inference)


def build_calls(
    request: Request,
    model: str | None,
    profile: ServerProfile,
    logprobs: bool,
    template: ChatTemplate | None,
) -> list[Call]:
    """The calls for ``request`` on a server of kind ``profile`` serving ``model``
    (``logprobs``: it returns token log-probabilities). A chat prefix goes to
    ``/v1/completions`` rendered with ``template`` when there is one, else to
    ``/v1/chat/completions``. A ``response_format`` goes to the server as OpenAI's
    field. ``EngineError`` for what the server cannot do."""
    p = request.params
    if p.ignore_eos and not profile.ignore_eos:
        raise EngineError(f"ignore_eos is not supported by this server (kind {profile.name!r})")
    if p.logprobs and not logprobs:
        raise EngineError("this server does not return token log-probabilities")
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": p.max_tokens,
        "temperature": p.temperature,
        "top_p": p.top_p,
        **profile.extra,
    }
    if p.top_k:
        body["top_k"] = p.top_k
    if p.min_p:
        body["min_p"] = p.min_p
    if p.stop:
        body["stop"] = list(p.stop)
    if p.ignore_eos:
        body["ignore_eos"] = True
    # Without a stop_reason from the server, the generated tokens past the returned
    # text tell which stop string matched: ask for them.
    infer_stop = bool(p.stop) and not profile.stop_reason and profile.tokens_past_stop and logprobs
    want_lp = p.logprobs or infer_stop
    if isinstance(request.prefix, str) or template is not None:
        if isinstance(request.prefix, str):
            prompt = request.prefix + request.partial
        else:
            assert template is not None
            prompt = template.render(request.prefix) + request.partial
        if not prompt:
            raise ValueError("the prompt is empty")
        path = "/v1/completions"
        body["prompt"] = prompt
        if request.response_format is not None and profile.schema_in_json_object:
            raise EngineError(
                f"this server (kind {profile.name!r}) takes response_format on chat "
                "completions only: use the engine without chat_template, so that chat "
                "prompts go there"
            )
        if want_lp:
            # at least 1: llama-server returns no logprobs at all for 0
            body["logprobs"] = max(1, p.top_logprobs)
    else:
        path = "/v1/chat/completions"
        messages = [dict(m) for m in request.prefix]
        if request.partial:
            if not profile.continue_final_message:
                raise EngineError(
                    "this server cannot continue a partial assistant answer through "
                    f"chat completions (server kind {profile.name!r}); give the "
                    "engine chat_template=<GGUF path, model name or Jinja source> so "
                    "ponder renders the prompt itself, or use vLLM or SGLang"
                )
            messages.append({"role": "assistant", "content": request.partial})
            body["add_generation_prompt"] = False
            body["continue_final_message"] = True
        body["messages"] = messages
        if want_lp:
            body["logprobs"] = True
            body["top_logprobs"] = max(1, p.top_logprobs)
    if request.response_format is not None:
        body["response_format"] = format_field(request.response_format, profile)
    calls = []
    if p.seed is not None:
        prompt_key = json.dumps(body.get("prompt", body.get("messages")), sort_keys=True)
    for i in range(request.n):
        b = dict(body)
        if p.seed is not None:
            b["seed"] = sample_seed(p.seed, i, prompt_key)
        calls.append(Call(path, b, i, p, p.logprobs))
    return calls


def format_field(fmt: ResponseFormat, profile: ServerProfile) -> dict[str, Any]:
    """The ``response_format`` body field for ``fmt`` on a server of kind ``profile``."""
    if profile.schema_in_json_object and fmt.schema is not None:
        return {"type": "json_object", "schema": json.loads(fmt.schema)}
    return fmt.as_openai()


def sample_seed(seed: int, index: int, prompt: str = "") -> int:
    """The server seed of sample ``index`` of a request seeded ``seed`` with ``prompt``:
    a 31-bit hash of all three. So the samples of requests seeded ``s`` and ``s + 1`` do
    not overlap, and the same seed on different prompts gives unrelated samples, as in the
    embedded engine (``sampler.streams``): a server seeded by the number alone draws the
    same random numbers for every prompt, and an evaluation's problems, all seeded 0,
    would make the same choices wherever the model's distributions are alike.
    """
    digest = hashlib.blake2b(prompt.encode(), digest_size=8).digest()
    x = (seed * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x ^= int.from_bytes(digest, "little")
    x ^= x >> 31
    x = (x * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 29
    return x & 0x7FFFFFFF
