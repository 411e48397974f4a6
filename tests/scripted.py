"""A deterministic scripted engine for testing strategy logic exactly.

Its output is a pure function of the request: ``script(prefix_text, sample_index)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ponder.engines.base import Capabilities
from ponder.types import Completion, Request, Usage


class ScriptedEngine:
    name = "scripted"

    def __init__(self, script: Callable[[str, int], str], logprobs: bool = True) -> None:
        self.script = script
        self.requests: list[Request] = []
        self._logprobs = logprobs

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            logprobs=self._logprobs, prefix_cache=False, max_parallel=64, max_context=4096
        )

    def _one(self, r: Request) -> list[Completion]:
        text = r.prefix if isinstance(r.prefix, str) else "\n".join(m["content"] for m in r.prefix)
        out = []
        for i in range(r.n):
            t = self.script(text + r.partial, i)
            n = len(t.split())
            out.append(
                Completion(t, n, "stop", Usage(tokens_generated=n, engine_calls=int(i == 0)))
            )
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
