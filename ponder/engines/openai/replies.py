"""Response parsing: a server's choice as a ``Completion``, token log-probabilities in the
completions and chat shapes, and the stop string read from the generated tokens."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from ponder.engines.openai.calls import Call
from ponder.types import Completion, TokenLogprob, Usage

__all__ = ["chat_logprobs", "completion", "completion_logprobs", "matched_stop"]


def completion(
    choice: dict[str, Any], usage: dict[str, Any], call: Call, start: float
) -> Completion:
    """The ``Completion`` of ``call`` from the first choice of its reply and the reply's
    usage; ``start``: when the batch began (for ``Usage.seconds``)."""
    p = call.params
    if "message" in choice:
        text = (choice.get("message") or {}).get("content") or ""
        lps = chat_logprobs(choice.get("logprobs"), p.top_logprobs)
    else:
        text = choice.get("text") or ""
        lps = completion_logprobs(choice.get("logprobs"), p.top_logprobs)
    raw_finish = choice.get("finish_reason")
    finish = raw_finish if raw_finish in ("stop", "length") else "error"
    stop_reason = None
    if "stop_reason" in choice or "matched_stop" in choice:
        sr = choice.get("stop_reason", choice.get("matched_stop"))
        stop_reason = sr if isinstance(sr, str) and sr in p.stop else None
    elif finish == "stop" and p.stop and lps is not None:
        stop_reason = matched_stop(text, lps, p.stop)
    n_prompt = int(usage.get("prompt_tokens") or 0)
    details = usage.get("prompt_tokens_details") or {}
    cached = min(n_prompt, int(details.get("cached_tokens") or 0))
    tokens = usage.get("completion_tokens")
    n_tokens = int(tokens) if tokens is not None else len(lps or ())
    return Completion(
        text=text,
        tokens=n_tokens,
        finish_reason=finish,
        usage=Usage(
            tokens_generated=n_tokens,
            prompt_tokens_computed=n_prompt - cached,
            prompt_tokens_cached=cached,
            engine_calls=1 if call.index == 0 else 0,
            seconds=time.perf_counter() - start,
        ),
        logprobs=lps if call.logprobs_asked else None,
        prompt_tokens=n_prompt,
        stop_reason=stop_reason,
    )


def matched_stop(text: str, lps: Sequence[TokenLogprob], stops: Sequence[str]) -> str | None:
    """The stop string that follows ``text`` in the generated tokens, if any.

    Servers cut the text just before the stop string but count (and report) the tokens
    that produced it; an end-of-turn token is neither in the text nor in the tokens.
    """
    generated = "".join(t.token for t in lps)
    if not generated.startswith(text):
        return None
    tail = generated[len(text) :]
    hits = [s for s in stops if tail.startswith(s)]
    return max(hits, key=len) if hits else None


def completion_logprobs(lp: Any, k: int) -> tuple[TokenLogprob, ...] | None:
    """Per-token logprobs of a completions choice: the legacy shape (``tokens``,
    ``token_logprobs``, ``top_logprobs`` dicts) or the chat shape llama-server uses."""
    if lp and lp.get("content") is not None:
        return chat_logprobs(lp, k)
    if not lp or lp.get("token_logprobs") is None:
        return None
    tops = lp.get("top_logprobs") or [None] * len(lp["tokens"])
    out = []
    for tok, val, top in zip(lp["tokens"], lp["token_logprobs"], tops, strict=False):
        if val is None:
            continue
        pairs = [(t, _finite(v)) for t, v in (top or {}).items()]
        out.append(TokenLogprob(tok, _finite(val), _top(pairs, k)))
    return tuple(out)


def chat_logprobs(lp: Any, k: int) -> tuple[TokenLogprob, ...] | None:
    """Per-token logprobs of a chat choice (``content``: one item per token)."""
    if not lp or lp.get("content") is None:
        return None
    out = []
    for item in lp["content"]:
        alts = item.get("top_logprobs") or []
        pairs = [(a["token"], _finite(a["logprob"])) for a in alts]
        # llama-server writes the sampled token's share of the streamed text here (it
        # may be empty or merged); the alternative with the same id has its true piece.
        token = next(
            (a["token"] for a in alts if "id" in item and a.get("id") == item["id"]),
            item["token"],
        )
        out.append(TokenLogprob(token, _finite(item["logprob"]), _top(pairs, k)))
    return tuple(out)


def _top(pairs: Sequence[tuple[str, float]], k: int) -> tuple[tuple[str, float], ...]:
    return tuple(sorted(pairs, key=lambda kv: -kv[1])[:k])


def _finite(v: Any) -> float:
    x = float(v)
    return x if math.isfinite(x) else -math.inf
