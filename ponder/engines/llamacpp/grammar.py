"""Response formats enforced while sampling, with llama.cpp grammars.

A format (``types.ResponseFormat``) becomes a GBNF grammar: a JSON schema through
llama-cpp-python's converter, ``json_object`` as the schema ``{"type": "object"}`` (so
whitespace is bounded the same way). Each sequence owns one grammar state, cloned from
a parsed grammar cached per context and advanced by every token it samples; the text a
request continues (``partial``) is fed to it first.

Sampling stays in numpy: the token the sampler draws from the raw logits is checked
against the grammar alone (one candidate, microseconds); only when the grammar refuses
it is the whole vocabulary masked (tens of milliseconds on a 49k vocabulary) and the
token drawn again from what is left, as llama.cpp's own sampler does. Without top-k,
top-p and min-p this draws exactly from the masked distribution; with them, those
filters apply to the masked distribution on a redraw. Control tokens (chat markers,
which decode to no text) are refused inside a format. A token the grammar refuses is
never accepted: llama.cpp aborts the process on one.
"""

from __future__ import annotations

import ctypes
import functools
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import llama_cpp as ll
import numpy as np
from llama_cpp.llama_grammar import json_schema_to_gbnf

from ponder.engines.llamacpp import sampler
from ponder.types import ResponseFormat, SamplingParams

if TYPE_CHECKING:
    from ponder.engines.llamacpp.native import NativeContext

ROOT = b"root"
MAX_DEPTH = 1000
_CACHED_GRAMMARS = 32
_TOKEN = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
assert _TOKEN.itemsize == ctypes.sizeof(ll.llama_token_data)


@functools.lru_cache(maxsize=64)
def gbnf_of(fmt: ResponseFormat) -> str:
    """The GBNF grammar of ``fmt``; ValueError naming what the converter cannot handle,
    or when the grammar nests deeper than ``MAX_DEPTH`` (llama.cpp's recursive parser
    overflows its stack on deep ones: ``maxLength: 100000`` crashes the process)."""
    schema = '{"type": "object"}' if fmt.type == "json_object" else fmt.schema or "{}"
    try:
        gbnf = json_schema_to_gbnf(schema)
    except Exception as exc:
        raise ValueError(f"the JSON schema cannot be turned into a grammar: {exc}") from None
    depth = nesting(gbnf)
    if depth > MAX_DEPTH:
        raise ValueError(
            f"the JSON schema's grammar nests {depth} groups deep, more than {MAX_DEPTH} "
            "(a large maxLength, maxItems or similar bound)"
        )
    return gbnf


def nesting(gbnf: str) -> int:
    """How deep ``gbnf``'s parenthesised groups nest (outside literals and classes)."""
    depth = deepest = 0
    quote: str | None = None
    escaped = False
    for ch in gbnf:
        if quote is not None:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
        elif ch == '"':
            quote = '"'
        elif ch == "[":
            quote = "]"
        elif ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth -= 1
    return deepest


def check(fmt: ResponseFormat) -> None:
    """ValueError unless ``fmt`` converts to a grammar llama.cpp parses (no model needed)."""
    handle = ll.llama_sampler_init_grammar(None, gbnf_of(fmt).encode(), ROOT)
    if not handle:
        raise ValueError("the JSON schema's grammar does not parse in llama.cpp")
    ll.llama_sampler_free(handle)


class _Handle:
    """One llama.cpp grammar sampler, freed with this object."""

    def __init__(self, ptr: ll.llama_sampler_p) -> None:
        self.ptr: ll.llama_sampler_p | None = ptr

    def __del__(self, _free: Any = ll.llama_sampler_free) -> None:
        if self.ptr:
            _free(self.ptr)
            self.ptr = None


class _Grammars:
    """A context's parsed grammars (least recently used dropped) and its masking buffer."""

    def __init__(self, nx: NativeContext) -> None:
        self.vocab = nx.vocab
        self.parsed: OrderedDict[str, _Handle] = OrderedDict()
        self.buf = np.zeros(nx.n_vocab, _TOKEN)
        self.buf["id"] = np.arange(nx.n_vocab)
        self.full = ll.llama_token_data_array(
            self.buf.ctypes.data_as(ll.llama_token_data_p), nx.n_vocab, -1, False
        )
        self.one = np.zeros(1, _TOKEN)
        self.single = ll.llama_token_data_array(
            self.one.ctypes.data_as(ll.llama_token_data_p), 1, -1, False
        )
        pieces = [nx.piece(t) for t in range(nx.n_vocab)]
        eog = set(nx.eog_ids.tolist())
        self.control = np.array(
            [t for t, p in enumerate(pieces) if not p and t not in eog], dtype=np.int64
        )
        self.control_set = frozenset(self.control.tolist())
        self.eog = eog

    def parse(self, gbnf: str) -> _Handle:
        handle = self.parsed.get(gbnf)
        if handle is None:
            ptr = ll.llama_sampler_init_grammar(self.vocab, gbnf.encode(), ROOT)
            if not ptr:
                raise ValueError("the response format's grammar does not parse in llama.cpp")
            handle = self.parsed[gbnf] = _Handle(ptr)
            while len(self.parsed) > _CACHED_GRAMMARS:
                self.parsed.popitem(last=False)
        self.parsed.move_to_end(gbnf)
        return handle


_BY_CONTEXT: weakref.WeakKeyDictionary[NativeContext, _Grammars] = weakref.WeakKeyDictionary()


def _grammars(nx: NativeContext) -> _Grammars:
    g = _BY_CONTEXT.get(nx)
    if g is None:
        g = _BY_CONTEXT[nx] = _Grammars(nx)
    return g


class Grammar:
    """One sequence's grammar state: which tokens may come next, advanced token by token."""

    def __init__(self, shared: _Grammars, handle: _Handle) -> None:
        self._g = shared
        self._h = handle

    @staticmethod
    def start(nx: NativeContext, fmt: ResponseFormat, partial_tokens: list[int]) -> Grammar:
        """A fresh grammar state for ``fmt`` on ``nx``'s vocabulary, past ``partial_tokens``
        (the text a request continues). ValueError when that text cannot begin the format."""
        shared = _grammars(nx)
        state = Grammar(shared, shared.parse(gbnf_of(fmt))).clone()
        for tok in partial_tokens:
            if not state.allows(tok):
                raise ValueError(
                    "the text to continue does not begin a reply in the response format "
                    f"(the grammar refuses {nx.piece(tok).decode('utf-8', 'replace')!r})"
                )
            state.accept(tok)
        return state

    def clone(self) -> Grammar:
        return Grammar(self._g, _Handle(ll.llama_sampler_clone(self._h.ptr)))

    def allows(self, token: int) -> bool:
        """Whether ``token`` may come next."""
        if token in self._g.control_set:
            return False
        one = self._g.one
        one["id"], one["logit"] = token, 0.0
        self._g.single.size, self._g.single.selected = 1, -1
        ll.llama_sampler_apply(self._h.ptr, ctypes.byref(self._g.single))
        return bool(np.isfinite(one["logit"][0]))

    def mask(self, row: np.ndarray) -> np.ndarray:
        """``row`` with every token that may not come next at minus infinity (a view
        into a buffer the next call overwrites)."""
        g = self._g
        g.buf["logit"] = row
        g.full.size, g.full.selected, g.full.sorted = g.buf.size, -1, False
        ll.llama_sampler_apply(self._h.ptr, ctypes.byref(g.full))
        logits = g.buf["logit"]
        if g.control.size:
            logits[g.control] = -np.inf
        return logits

    def accept(self, token: int) -> None:
        """Advance past ``token``, which ``allows`` (end-of-generation tokens end the
        sequence and are not fed)."""
        if token not in self._g.eog:
            ll.llama_sampler_accept(self._h.ptr, token)

    def sample(self, row: np.ndarray, params: SamplingParams, rng: np.random.Generator) -> int:
        """A token drawn as ``sampler.sample`` draws it, among those the grammar allows,
        and accepted. With none allowed (only when end-of-generation is masked too), an
        end-of-generation token, which ends the sequence."""
        tok = sampler.sample(row, params, rng)
        if not self.allows(tok):
            masked = self.mask(row)
            if not np.isfinite(masked).any():
                return min(self._g.eog)
            tok = sampler.sample(masked, params, rng)
        self.accept(tok)
        return tok
