"""What each kind of OpenAI-compatible server offers beyond the common API."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["PROFILES", "ServerProfile", "profile_for_owner"]


@dataclass(frozen=True)
class ServerProfile:
    """What a kind of server offers beyond the common OpenAI API.

    ``continue_final_message``: chat completions accept ``continue_final_message`` (a
    trailing assistant message is continued, not closed). ``stop_reason``: each choice
    says which stop string ended it. ``tokens_past_stop``: with logprobs, the reply lists
    the generated tokens that formed the stop string (so it can be read from them).
    ``ignore_eos``: the body field ``ignore_eos`` works.
    ``props``: ``GET /props`` describes the chat template and context size (llama-server).
    ``extra``: fields sent with every generation request (to undo server defaults that
    differ from ponder's sampling semantics). ``schema_in_json_object``: the server takes
    a JSON schema as ``{"type": "json_object", "schema": ...}``, on chat completions
    only (llama-cpp-python), instead of OpenAI's ``json_schema`` format.
    """

    name: str
    continue_final_message: bool = False
    stop_reason: bool = False
    tokens_past_stop: bool = True
    ignore_eos: bool = False
    prefix_cache: bool = False
    props: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    schema_in_json_object: bool = False


PROFILES: dict[str, ServerProfile] = {
    p.name: p
    for p in (
        ServerProfile(
            "vllm",
            continue_final_message=True,
            stop_reason=True,
            ignore_eos=True,
            prefix_cache=True,
        ),
        ServerProfile(
            "sglang",
            continue_final_message=True,
            stop_reason=True,
            ignore_eos=True,
            prefix_cache=True,
        ),
        ServerProfile(
            "llama-server", tokens_past_stop=False, ignore_eos=True, prefix_cache=True, props=True
        ),
        # llama-cpp-python's server applies a repeat penalty of 1.1 unless told otherwise.
        ServerProfile(
            "llama-cpp-python", extra={"repeat_penalty": 1.0}, schema_in_json_object=True
        ),
        ServerProfile("generic"),
    )
}
"""Known server kinds, chosen from the ``owned_by`` field of ``GET /v1/models``."""

_OWNED_BY = {
    "vllm": "vllm",
    "sglang": "sglang",
    "llamacpp": "llama-server",
    "me": "llama-cpp-python",
}


def profile_for_owner(owned_by: str) -> ServerProfile:
    """The profile of the server whose ``/v1/models`` says ``owned_by`` (else generic)."""
    return PROFILES[_OWNED_BY.get(owned_by, "generic")]
