"""A deterministic scripted engine for testing strategy logic exactly.

Its output is a pure function of the request: ``script(prefix_text, sample_index)``, where
``prefix_text`` is the chat messages' contents joined by newlines plus the request's
``partial``. Like a real engine it honours stop strings (the text is cut before the first
one and ``stop_reason`` names it) and ``max_tokens`` (a token is a whitespace-separated
word). ``logprob(text)`` gives every token of a completion the same log-probability.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ponder.engines.base import Capabilities
from ponder.types import Completion, Request, TokenLogprob, Usage


class ScriptedEngine:
    name = "scripted"

    def __init__(
        self,
        script: Callable[[str, int], str],
        logprobs: bool = True,
        logprob: Callable[[str], float] = lambda text: -0.5,
    ) -> None:
        self.script = script
        self.requests: list[Request] = []
        self._logprobs = logprobs
        self.logprob = logprob

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            logprobs=self._logprobs, prefix_cache=False, max_parallel=64, max_context=4096
        )

    def prefix_text(self, r: Request) -> str:
        text = r.prefix if isinstance(r.prefix, str) else "\n".join(m["content"] for m in r.prefix)
        return text + r.partial

    def _one(self, r: Request) -> list[Completion]:
        prefix = self.prefix_text(r)
        out = []
        for i in range(r.n):
            t = self.script(prefix, i)
            finish, stop_reason = "stop", None
            hits = [(k, s) for s in r.params.stop if (k := t.find(s)) >= 0]
            if hits:
                cut, stop_reason = min(hits)
                t = t[:cut]
            words = t.split(" ")
            if len(t.split()) > r.params.max_tokens:
                t, finish, stop_reason = " ".join(words[: r.params.max_tokens]), "length", None
            n = len(t.split())
            lps = None
            if r.params.logprobs:
                lp = self.logprob(t)
                lps = tuple(TokenLogprob(w, lp) for w in t.split()) or None
            usage = Usage(
                tokens_generated=n,
                prompt_tokens_computed=len(prefix.split()) if i == 0 else 0,
                prompt_tokens_cached=0 if i == 0 else len(prefix.split()),
                engine_calls=int(i == 0),
            )
            out.append(Completion(t, n, finish, usage, lps, len(prefix.split()), stop_reason))
        return out

    async def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        self.requests.extend(requests)
        return [self._one(r) for r in requests]

    async def generate_settled(
        self, requests: Sequence[Request]
    ) -> list[list[Completion] | Exception]:
        return list(await self.generate(requests))

    def generate_sync(self, requests: Sequence[Request]) -> list[list[Completion]]:
        self.requests.extend(requests)
        return [self._one(r) for r in requests]

    def close(self) -> None:
        pass
