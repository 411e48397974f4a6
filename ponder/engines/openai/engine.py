"""A remote engine over any OpenAI-compatible server: vLLM, SGLang, llama.cpp's servers.

Every sample is its own HTTP request (a request with ``n`` samples becomes ``n`` calls):
each sample then has its own seed, its own token count and its own usage, and the
samples of one request spread over all servers. The servers' prefix caches make the
repeated prompt cheap. All HTTP runs on one private event-loop thread, so any thread or
event loop may call the engine. See docs/ENGINES.md for what a server must offer.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import threading
import time
from collections.abc import Coroutine, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from ponder.engines.base import Capabilities, ContextOverflowError, EngineError
from ponder.types import Completion, Message, Request, SamplingParams, TokenLogprob, Usage

T = TypeVar("T")

_OVERFLOW = re.compile(
    r"context[ _](length|window|size)|maximum context|exceed_context|prompt is too long", re.I
)


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
    differ from ponder's sampling semantics).
    """

    name: str
    continue_final_message: bool = False
    stop_reason: bool = False
    tokens_past_stop: bool = True
    ignore_eos: bool = False
    prefix_cache: bool = False
    props: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


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
        ServerProfile("llama-cpp-python", extra={"repeat_penalty": 1.0}),
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


@dataclass
class _Backend:
    url: str
    outstanding: int = 0
    served: int = 0
    failures: int = 0
    down_until: float = 0.0


@dataclass(frozen=True)
class _Call:
    """One HTTP generation call: sample ``index`` of a request."""

    path: str
    body: dict[str, Any]
    index: int
    params: SamplingParams
    logprobs_asked: bool  # the caller asked for logprobs (else they served stop inference)


class ChatTemplate:
    """A Jinja chat template rendered on the client, the way Hugging Face renders it.

    ``server_adds_bos``: the server puts a BOS token before a completion prompt when it
    tokenizes it, so a BOS the template writes is dropped (else it would appear twice).
    """

    def __init__(
        self, source: str, bos_token: str = "", eos_token: str = "", server_adds_bos: bool = False
    ) -> None:
        from jinja2 import BaseLoader, TemplateError
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(
            loader=BaseLoader(), trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
        )
        env.filters["tojson"] = lambda x, indent=None: json.dumps(
            x, ensure_ascii=False, indent=indent
        )
        try:
            self._template = env.from_string(source)
        except TemplateError as exc:
            raise ValueError(f"the chat template does not parse: {exc}") from exc
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.server_adds_bos = server_adds_bos

    def render(self, messages: Sequence[Message]) -> str:
        """The prompt text for ``messages`` with an assistant turn opened."""

        def raise_exception(message: str) -> None:
            raise ValueError(f"the chat template refused the messages: {message}")

        text = self._template.render(
            messages=list(messages),
            bos_token=self.bos_token,
            eos_token=self.eos_token,
            add_generation_prompt=True,
            raise_exception=raise_exception,
            strftime_now=lambda f: time.strftime(f),
        )
        if self.server_adds_bos and self.bos_token and text.startswith(self.bos_token):
            text = text[len(self.bos_token) :]
        return text

    @staticmethod
    def from_gguf(path: str | Path) -> ChatTemplate:
        """The template stored in a GGUF file's metadata (reads the vocabulary only); a
        llama.cpp server adds BOS to a completion prompt when the vocabulary asks for it."""
        from llama_cpp import Llama

        llm = Llama(str(path), vocab_only=True, verbose=False)
        try:
            source = llm.metadata.get("tokenizer.chat_template")
            if not source:
                raise ValueError(f"{path} carries no chat template")

            def text(token: int) -> str:
                if token < 0:
                    return ""
                return llm.detokenize([token], special=True).decode("utf-8", "replace")

            bos = llm.token_bos()
            adds_bos = bos >= 0 and llm.tokenize(b"x", add_bos=True)[:1] == [bos]
            return ChatTemplate(source, text(bos), text(llm.token_eos()), adds_bos)
        finally:
            llm.close()

    @staticmethod
    def load(spec: str) -> ChatTemplate:
        """From Jinja source text, a GGUF path, or a ponder model name."""
        if "{%" in spec or "{{" in spec:
            return ChatTemplate(spec)
        if Path(spec).is_file():
            return ChatTemplate.from_gguf(spec)
        from ponder import models

        return ChatTemplate.from_gguf(models.resolve(spec))


class OpenAIEngine:
    """Generates through one or more OpenAI-compatible servers serving the same model.

    ``base_urls``: server roots such as ``http://host:8000`` (a trailing ``/v1`` is
    accepted). Requests go to the server with the fewest outstanding requests; a server
    that refuses connections is skipped for a while and the request fails over.
    ``model``: the served model name (default: the first one ``/v1/models`` lists).
    ``max_connections``: at most this many calls in flight over all servers.
    ``timeout``: seconds to wait for one reply. ``retries``: further attempts after a
    connection error, a 429 or a 5xx, waiting ``backoff * 2**attempt`` seconds between.
    ``chat_template``: Jinja source, a GGUF path or a ponder model name; when given, chat
    prefixes are rendered here and sent to ``/v1/completions`` (needed to continue a
    partial answer on servers without ``continue_final_message``). ``server``: a key of
    ``PROFILES`` to skip detection. ``max_context``/``logprobs``: declare what the server
    does not report (else detected; an unknown context size is 0).
    """

    name = "openai"

    def __init__(
        self,
        base_urls: str | Sequence[str],
        model: str | None = None,
        api_key: str | None = None,
        *,
        max_connections: int = 16,
        timeout: float = 600.0,
        retries: int = 4,
        backoff: float = 0.5,
        chat_template: str | None = None,
        server: str | None = None,
        max_context: int | None = None,
        logprobs: bool | None = None,
    ) -> None:
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise ValueError("give at least one base URL")
        for u in urls:
            if not u.startswith(("http://", "https://")):
                raise ValueError(f"a base URL starts with http:// or https://, got {u!r}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if retries < 0 or backoff < 0:
            raise ValueError("retries and backoff must be >= 0")
        if server is not None and server not in PROFILES:
            raise ValueError(f"unknown server kind {server!r}; one of {sorted(PROFILES)}")
        self._backends = [_Backend(_root(u)) for u in urls]
        self.model = model
        self.max_connections = max_connections
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.template = ChatTemplate.load(chat_template) if chat_template else None
        self.profile: ServerProfile | None = PROFILES[server] if server else None
        self._max_context = max_context
        self._logprobs = logprobs
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._probed = False
        self._closed = False
        self._close_lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ponder-openai")
        self._thread.daemon = True
        self._thread.start()
        self._client: httpx.AsyncClient = self._run(self._make_client())
        self._slots = asyncio.Semaphore(max_connections)
        self._probe_lock = asyncio.Lock()

    async def _make_client(self) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=self.max_connections, max_keepalive_connections=None)
        to = httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0), pool=None)
        return httpx.AsyncClient(limits=limits, timeout=to, headers=self._headers)

    # ---- protocol --------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        self._ensure_probed()
        assert self.profile is not None
        return Capabilities(
            logprobs=bool(self._logprobs),
            prefix_cache=self.profile.prefix_cache,
            max_parallel=self.max_connections,
            max_context=self._max_context or 0,
        )

    @property
    def base_urls(self) -> list[str]:
        return [b.url for b in self._backends]

    def served(self) -> dict[str, int]:
        """How many calls each server answered successfully."""
        return {b.url: b.served for b in self._backends}

    async def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        out = await self.generate_settled(requests)
        for r in out:
            if isinstance(r, Exception):
                raise r
        return [r for r in out if not isinstance(r, Exception)]

    async def generate_settled(
        self, requests: Sequence[Request]
    ) -> list[list[Completion] | Exception]:
        coro = self._settled(list(requests))
        if _running_loop() is self._loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def generate_sync(self, requests: Sequence[Request]) -> list[list[Completion]]:
        out = self._run(self._settled(list(requests)))
        for r in out:
            if isinstance(r, Exception):
                raise r
        return [r for r in out if not isinstance(r, Exception)]

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        asyncio.run_coroutine_threadsafe(self._client.aclose(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> OpenAIEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the event-loop thread ---------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise EngineError("the engine is closed")
        if _running_loop() is self._loop:
            coro.close()
            raise EngineError("a blocking engine call was made from the engine's own loop")
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result()

    def _ensure_probed(self) -> None:
        if not self._probed:
            self._run(self._probe())

    async def _probe(self) -> None:
        """Learn the model name, the kind of server, its context size and logprobs."""
        async with self._probe_lock:
            if self._probed:
                return
            listing = await self._request("GET", "/v1/models", None)
            data = listing.get("data") or []
            if not data:
                raise EngineError(f"{self.base_urls[0]}/v1/models lists no model")
            entry = next((d for d in data if d.get("id") == self.model), None)
            if self.model is None:
                entry = data[0]
                self.model = str(entry["id"])
            elif entry is None:
                served = ", ".join(str(d.get("id")) for d in data)
                raise EngineError(f"the server does not serve {self.model!r}; it serves {served}")
            if self.profile is None:
                owner = str(entry.get("owned_by", ""))
                self.profile = PROFILES[_OWNED_BY.get(owner, "generic")]
            if self._max_context is None and entry.get("max_model_len"):
                self._max_context = int(entry["max_model_len"])
            if self.profile.props:
                props = await self._request("GET", "/props", None)
                settings = props.get("default_generation_settings") or {}
                if self._max_context is None and settings.get("n_ctx"):
                    self._max_context = int(settings["n_ctx"])
                if self.template is None and props.get("chat_template"):
                    # Does the server put BOS before a completion prompt? Compare its
                    # tokenization of one character with and without special tokens.
                    lengths = [
                        len(
                            (await self._request("POST", "/tokenize", {"content": "x", **f}))[
                                "tokens"
                            ]
                        )
                        for f in ({"add_special": True}, {"add_special": False})
                    ]
                    self.template = ChatTemplate(
                        props["chat_template"],
                        props.get("bos_token", ""),
                        props.get("eos_token", ""),
                        server_adds_bos=lengths[0] > lengths[1],
                    )
            if self._logprobs is None:
                self._logprobs = await self._probe_logprobs()
            self._probed = True

    async def _probe_logprobs(self) -> bool:
        body: dict[str, Any] = {"model": self.model, "prompt": "1 2 3", "max_tokens": 1}
        body.update(logprobs=1, temperature=0.0)
        try:
            reply = await self._request("POST", "/v1/completions", {**body, **self._extra()})
        except EngineError:
            return False
        choices = reply.get("choices") or [{}]
        return bool(_completion_logprobs(choices[0].get("logprobs"), 1))

    def _extra(self) -> dict[str, Any]:
        return dict(self.profile.extra) if self.profile else {}

    async def _settled(self, requests: list[Request]) -> list[list[Completion] | Exception]:
        try:
            await self._probe()
        except EngineError as exc:
            return [exc for _ in requests]
        start = time.perf_counter()
        return list(await asyncio.gather(*(self._one(r, start) for r in requests)))

    async def _one(self, request: Request, start: float) -> list[Completion] | Exception:
        try:
            calls = self._calls(request)
        except (EngineError, ValueError) as exc:
            return exc
        tasks = [asyncio.ensure_future(self._complete(c, start)) for c in calls]
        try:
            done = await asyncio.gather(*tasks)
        except Exception as exc:  # one failed sample fails its request; stop the others
            for t in tasks:
                t.cancel()
            return exc
        return list(done)

    # ---- building calls ----------------------------------------------------------------

    def _calls(self, request: Request) -> list[_Call]:
        """The HTTP calls for a request, one per sample."""
        assert self.profile is not None
        p = request.params
        if p.ignore_eos and not self.profile.ignore_eos:
            raise EngineError(
                f"ignore_eos is not supported by this server (kind {self.profile.name!r})"
            )
        if p.logprobs and not self._logprobs:
            raise EngineError("this server does not return token log-probabilities")
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": p.max_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
            **self._extra(),
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
        infer_stop = (
            bool(p.stop)
            and not self.profile.stop_reason
            and self.profile.tokens_past_stop
            and bool(self._logprobs)
        )
        want_lp = p.logprobs or infer_stop
        if isinstance(request.prefix, str) or self.template is not None:
            if isinstance(request.prefix, str):
                prompt = request.prefix + request.partial
            else:
                assert self.template is not None
                prompt = self.template.render(request.prefix) + request.partial
            if not prompt:
                raise ValueError("the prompt is empty")
            path = "/v1/completions"
            body["prompt"] = prompt
            if want_lp:
                # at least 1: llama-server returns no logprobs at all for 0
                body["logprobs"] = max(1, p.top_logprobs)
        else:
            path = "/v1/chat/completions"
            messages = [dict(m) for m in request.prefix]
            if request.partial:
                if not self.profile.continue_final_message:
                    raise EngineError(
                        "this server cannot continue a partial assistant answer through "
                        f"chat completions (server kind {self.profile.name!r}); give the "
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
        calls = []
        for i in range(request.n):
            b = dict(body)
            if p.seed is not None:
                b["seed"] = sample_seed(p.seed, i)
            calls.append(_Call(path, b, i, p, p.logprobs))
        return calls

    async def _complete(self, call: _Call, start: float) -> Completion:
        reply = await self._request("POST", call.path, call.body)
        choices = reply.get("choices") or []
        if not choices:
            raise EngineError(f"the server returned no choices: {str(reply)[:300]}")
        return _completion(choices[0], reply.get("usage") or {}, call, start)

    # ---- HTTP with retries, failover and load balancing ---------------------------------

    def _pick(self, tried: set[int]) -> int:
        now = time.monotonic()
        idx = [i for i in range(len(self._backends)) if i not in tried] or list(
            range(len(self._backends))
        )
        up = [i for i in idx if self._backends[i].down_until <= now]
        if up:
            return min(up, key=lambda i: (self._backends[i].outstanding, self._backends[i].served))
        return min(idx, key=lambda i: self._backends[i].down_until)

    async def _request(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        tried: set[int] = set()
        last = ""
        async with self._slots:
            for attempt in range(self.retries + 1):
                if attempt:
                    await asyncio.sleep(self.backoff * 2 ** (attempt - 1) * random.uniform(1, 1.5))
                i = self._pick(tried)
                b = self._backends[i]
                b.outstanding += 1
                try:
                    resp = await self._client.request(method, b.url + path, json=body)
                except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
                    b.failures += 1
                    b.down_until = time.monotonic() + min(30.0, self.backoff * 2**b.failures)
                    tried.add(i)
                    last = f"{b.url}: cannot connect ({type(exc).__name__}: {exc})"
                    continue
                except httpx.TimeoutException as exc:
                    raise EngineError(
                        f"{b.url}{path}: no reply within {self.timeout:g} s ({type(exc).__name__})"
                    ) from exc
                except httpx.HTTPError as exc:
                    tried.add(i)
                    last = f"{b.url}: {type(exc).__name__}: {exc}"
                    continue
                finally:
                    b.outstanding -= 1
                if resp.status_code == 429 or resp.status_code >= 500:
                    tried.add(i)
                    last = f"{b.url}{path}: HTTP {resp.status_code}: {_message(resp)}"
                    continue
                if resp.status_code >= 400:
                    msg = _message(resp)
                    text = f"{b.url}{path}: HTTP {resp.status_code}: {msg}"
                    if resp.status_code in (400, 413, 422) and _OVERFLOW.search(msg):
                        raise ContextOverflowError(text)
                    raise EngineError(text)
                b.failures = 0
                b.down_until = 0.0
                b.served += 1
                try:
                    return resp.json()
                except ValueError as exc:
                    raise EngineError(f"{b.url}{path}: the reply is not JSON") from exc
        raise EngineError(f"{path} failed after {self.retries + 1} attempts; last: {last}")


def sample_seed(seed: int, index: int) -> int:
    """The server seed of sample ``index`` of a request seeded ``seed``.

    Sample 0 uses ``seed`` itself; the others a 31-bit hash of ``(seed, index)``, so that
    the samples of requests seeded ``s`` and ``s + 1`` do not overlap.
    """
    if index == 0:
        return seed
    x = (seed * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 31
    x = (x * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 29
    return x & 0x7FFFFFFF


def _completion(
    choice: dict[str, Any], usage: dict[str, Any], call: _Call, start: float
) -> Completion:
    p = call.params
    if "message" in choice:
        text = (choice.get("message") or {}).get("content") or ""
        lps = _chat_logprobs(choice.get("logprobs"), p.top_logprobs)
    else:
        text = choice.get("text") or ""
        lps = _completion_logprobs(choice.get("logprobs"), p.top_logprobs)
    raw_finish = choice.get("finish_reason")
    finish = raw_finish if raw_finish in ("stop", "length") else "error"
    stop_reason = None
    if "stop_reason" in choice or "matched_stop" in choice:
        sr = choice.get("stop_reason", choice.get("matched_stop"))
        stop_reason = sr if isinstance(sr, str) and sr in p.stop else None
    elif finish == "stop" and p.stop and lps is not None:
        stop_reason = _matched_stop(text, lps, p.stop)
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


def _matched_stop(text: str, lps: Sequence[TokenLogprob], stops: Sequence[str]) -> str | None:
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


def _top(pairs: Sequence[tuple[str, float]], k: int) -> tuple[tuple[str, float], ...]:
    return tuple(sorted(pairs, key=lambda kv: -kv[1])[:k])


def _finite(v: Any) -> float:
    x = float(v)
    return x if math.isfinite(x) else -math.inf


def _completion_logprobs(lp: Any, k: int) -> tuple[TokenLogprob, ...] | None:
    """Per-token logprobs of a completions choice: the legacy shape (``tokens``,
    ``token_logprobs``, ``top_logprobs`` dicts) or the chat shape llama-server uses."""
    if lp and lp.get("content") is not None:
        return _chat_logprobs(lp, k)
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


def _chat_logprobs(lp: Any, k: int) -> tuple[TokenLogprob, ...] | None:
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


def _message(resp: httpx.Response) -> str:
    """The server's error message, from the OpenAI, FastAPI or plain-text error shapes."""
    try:
        data = resp.json()
    except ValueError:
        return resp.text.strip()[:500] or resp.reason_phrase
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("message")))
        if isinstance(err, dict):
            return str(err.get("message") or err)
        if err is not None:
            return str(err)
    return str(data)[:500]


def _root(url: str) -> str:
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
