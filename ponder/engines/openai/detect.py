"""Server capability detection: the model, the kind of server, its context size, its chat
template and whether it returns token log-probabilities."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ponder.engines.base import EngineError
from ponder.engines.chat_template import ChatTemplate
from ponder.engines.openai.profiles import ServerProfile, profile_for_owner
from ponder.engines.openai.replies import completion_logprobs
from ponder.engines.openai.transport import Servers

__all__ = ["ServerInfo", "detect"]


@dataclass(frozen=True)
class ServerInfo:
    """What the engine knows about its servers once detection is done."""

    model: str
    profile: ServerProfile
    max_context: int | None
    template: ChatTemplate | None
    logprobs: bool


async def detect(
    servers: Servers,
    model: str | None,
    profile: ServerProfile | None,
    max_context: int | None,
    template: ChatTemplate | None,
    logprobs: bool | None,
) -> ServerInfo:
    """Fill in what the caller left as None from ``GET /v1/models`` (model: the first one
    listed; kind: its ``owned_by``; context: its ``max_model_len``), llama-server's
    ``GET /props`` (context size and chat template) and a one-token logprobs request."""
    listing = await servers.request("GET", "/v1/models", None)
    data = listing.get("data") or []
    if not data:
        raise EngineError(f"{servers.urls[0]}/v1/models lists no model")
    entry = next((d for d in data if d.get("id") == model), None)
    if model is None:
        entry = data[0]
        model = str(entry["id"])
    elif entry is None:
        served = ", ".join(str(d.get("id")) for d in data)
        raise EngineError(f"the server does not serve {model!r}; it serves {served}")
    if profile is None:
        profile = profile_for_owner(str(entry.get("owned_by", "")))
    if max_context is None and entry.get("max_model_len"):
        max_context = int(entry["max_model_len"])
    if profile.props:
        props = await servers.request("GET", "/props", None)
        settings = props.get("default_generation_settings") or {}
        if max_context is None and settings.get("n_ctx"):
            max_context = int(settings["n_ctx"])
        if template is None and props.get("chat_template"):
            template = await _server_template(servers, props)
    if logprobs is None:
        logprobs = await _logprobs_work(servers, model, profile)
    return ServerInfo(model, profile, max_context, template, logprobs)


async def _server_template(servers: Servers, props: dict[str, Any]) -> ChatTemplate:
    """llama-server's chat template, and whether the server puts BOS before a completion
    prompt: it does when one character tokenizes longer with special tokens than without."""
    lengths = []
    for flags in ({"add_special": True}, {"add_special": False}):
        reply = await servers.request("POST", "/tokenize", {"content": "x", **flags})
        lengths.append(len(reply["tokens"]))
    return ChatTemplate(
        props["chat_template"],
        props.get("bos_token", ""),
        props.get("eos_token", ""),
        server_adds_bos=lengths[0] > lengths[1],
    )


async def _logprobs_work(servers: Servers, model: str, profile: ServerProfile) -> bool:
    body: dict[str, Any] = {"model": model, "prompt": "1 2 3", "max_tokens": 1}
    body.update(logprobs=1, temperature=0.0)
    try:
        reply = await servers.request("POST", "/v1/completions", {**body, **profile.extra})
    except EngineError:
        return False
    choices = reply.get("choices") or [{}]
    return bool(completion_logprobs(choices[0].get("logprobs"), 1))
