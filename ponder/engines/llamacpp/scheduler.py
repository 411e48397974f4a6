"""Continuous batching over one llama.cpp context, with automatic prefix sharing.

Every step: admit waiting sequences into free KV slots (forking the longest cached
prefix of each from the radix tree), then run ONE ``llama_decode`` holding one token
for every decoding sequence plus chunks of prompt for the prefilling ones, sample,
retire what finished. A finished sequence's slot stays in the tree as cache until a
least-recently-used eviction needs it. When the KV cache is full, idle slots are
evicted first; if none is left, the newest running sequence is preempted (its KV is
dropped and it resumes later by recomputation, losing no tokens).
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from ponder.engines.base import ContextOverflowError, EngineError
from ponder.engines.llamacpp import sampler
from ponder.engines.llamacpp.grammar import Grammar
from ponder.engines.llamacpp.native import NativeContext
from ponder.engines.llamacpp.radix import RadixTree, common_prefix
from ponder.types import Completion, Request, TokenLogprob, Usage

# A waiting sequence is held back for a step when a sequence now being prefilled
# shares this many more tokens with it than the cache does: it will fork them instead.
_DEFER_GAIN = 32


@dataclass(eq=False)
class Ticket:
    """One submitted request and the future its caller waits on."""

    request: Request
    prompt: list[int]
    future: Future[list[Completion]]
    submitted: float
    results: list[Completion | None] = field(default_factory=list)
    done: int = 0
    cancelled: bool = False


@dataclass(eq=False)
class Seq:
    ticket: Ticket
    index: int
    rng: np.random.Generator
    tokens: list[int]
    n_prompt: int
    slot: int | None = None
    computed: int = 0
    text: bytes = b""
    logprobs: list[TokenLogprob] = field(default_factory=list)
    leader: Seq | None = None
    followers: list[Seq] = field(default_factory=list)
    prompt_computed: int = 0
    prompt_cached: int = 0
    finish: str | None = None
    stop_reason: str | None = None
    grammar: Grammar | None = None

    @property
    def generated(self) -> int:
        return len(self.tokens) - self.n_prompt

    @property
    def prefilling(self) -> bool:
        return self.computed < len(self.tokens)


class Scheduler:
    def __init__(self, native: NativeContext, max_seq_len: int) -> None:
        self.nx = native
        self.max_seq_len = max_seq_len
        self.tree = RadixTree()
        self.waiting: deque[Seq] = deque()
        self.running: list[Seq] = []
        self.free_slots: list[int] = list(range(native.n_seq_max - 1, -1, -1))
        self.idle: dict[int, int] = {}  # slot -> last-use stamp
        self._clock = itertools.count()
        # slot -> (a token list, how many of its first tokens the slot holds KV for)
        self._slot_tokens: dict[int, tuple[list[int], int]] = {}
        self.steps = 0
        self.preemptions = 0
        # Set by a preemption, cleared when a sequence leaves: re-admitting the victim
        # while the cache is still full would only preempt again, forever.
        self._hold_admissions = False

    # ---- intake ----------------------------------------------------------------------

    def add(self, ticket: Ticket, seed: int) -> None:
        n = ticket.request.n
        ticket.results = [None] * n
        if len(ticket.prompt) >= self.max_seq_len:
            _fail(
                ticket,
                ContextOverflowError(
                    f"the prompt has {len(ticket.prompt)} tokens but a sequence can hold at "
                    f"most {self.max_seq_len}: shorten it or start the engine with a larger n_ctx"
                ),
            )
            return
        params = ticket.request.params
        base = params.seed if params.seed is not None else seed
        if isinstance(base, bool) or not isinstance(base, int | np.integer) or base < 0:
            _fail(ticket, ValueError(f"seed must be an integer >= 0 or None, got {base!r}"))
            return
        rngs = sampler.streams(base, ticket.prompt, n)
        seqs = [
            Seq(ticket, i, rng, list(ticket.prompt), len(ticket.prompt))
            for i, rng in enumerate(rngs)
        ]
        fmt, partial = ticket.request.response_format, ticket.request.partial
        if fmt is not None:
            try:
                state = Grammar.start(self.nx, fmt, self.nx.tokenize(partial, False))
            except ValueError as exc:
                _fail(ticket, exc)
                return
            for seq in seqs:
                seq.grammar = state.clone()
        for follower in seqs[1:]:
            follower.leader = seqs[0]
        seqs[0].followers = seqs[1:]
        self.waiting.append(seqs[0])

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    # ---- one step --------------------------------------------------------------------

    def step(self) -> None:
        self._drop_cancelled()
        self._admit()
        if not self.running:
            return
        plan = self._build_batch()
        rc = self.nx.decode()
        if rc == 1:
            self._make_room()
            return
        if rc != 0:
            raise EngineError(f"llama_decode failed with status {rc}")
        self.steps += 1
        self._after_decode(plan)

    def _drop_cancelled(self) -> None:
        for s in [s for s in self.running if s.ticket.cancelled]:
            self.running.remove(s)
            self._release(s)
        self.waiting = deque(s for s in self.waiting if not s.ticket.cancelled)

    def _admit(self) -> None:
        if self._hold_admissions and self.running:
            return
        self._hold_admissions = False
        prefilling = [s for s in self.running if s.prefilling]
        deferred: list[Seq] = []
        while self.waiting:
            seq = self.waiting.popleft()
            limit = len(seq.tokens) - 1
            n_hit, src = self.tree.longest_match(seq.tokens[:limit]) if limit > 0 else (0, None)
            if any(common_prefix(p.tokens, seq.tokens) > n_hit + _DEFER_GAIN for p in prefilling):
                deferred.append(seq)
                continue
            slot = self._acquire_slot(src, n_hit)
            if slot is None:
                self.waiting.appendleft(seq)
                break
            if src is not None and n_hit > 0 and src != slot:
                self.nx.seq_copy(src, slot, n_hit)
                self.tree.insert(slot, seq.tokens[:n_hit])
                self._slot_tokens[slot] = (seq.tokens, n_hit)
            seq.slot, seq.computed = slot, n_hit
            seq.prompt_cached += min(n_hit, seq.n_prompt)
            self.running.append(seq)
            prefilling.append(seq)
        self.waiting.extendleft(reversed(deferred))

    def _acquire_slot(self, src: int | None, n_hit: int) -> int | None:
        if self.free_slots:
            return self.free_slots.pop()
        if not self.idle:
            return None
        others = [s for s in self.idle if s != src]
        if not others:
            # The only idle slot is the one to fork from: continue in it directly.
            assert src is not None
            del self.idle[src]
            self.nx.seq_remove(src, n_hit)
            tokens, _ = self._slot_tokens[src]
            self.tree.insert(src, tokens[:n_hit])
            self._slot_tokens[src] = (tokens, n_hit)
            return src
        victim = min(others, key=self.idle.__getitem__)
        self.evict(victim)
        return self.free_slots.pop()

    def evict(self, slot: int) -> None:
        """Drop an idle slot's cached KV and free the slot."""
        del self.idle[slot]
        self.nx.seq_remove(slot)
        self.tree.remove(slot)
        self._slot_tokens.pop(slot, None)
        self.free_slots.append(slot)

    def reset_if_empty(self) -> None:
        """With nothing running or cached, put the KV cache back in its initial state
        (cells placed from the start again, slots handed out in their first order), so
        that the same requests lay out their cells, and so compute, exactly as before."""
        if not (self.running or self.waiting or self.idle):
            self._reset()

    def _reset(self) -> None:
        """Empty the KV cache, the prefix tree and the slot bookkeeping."""
        self.nx.memory_clear()
        self.tree = RadixTree()
        self._slot_tokens.clear()
        self.idle.clear()
        self.free_slots = list(range(self.nx.n_seq_max - 1, -1, -1))

    def _build_batch(self) -> list[tuple[Seq, int, int]]:
        """Fill the batch; return (seq, tokens added, logits index or -1) per sequence."""
        nx = self.nx
        nx.batch_clear()
        plan: list[tuple[Seq, int, int]] = []
        # Decode tokens first: one per sequence that is generating.
        for s in self.running:
            if s.computed == len(s.tokens) - 1 and s.generated > 0 and s.slot is not None:
                idx = nx.batch_add(s.tokens[-1], s.computed, s.slot, True)
                plan.append((s, 1, idx))
        # Prefill: single tokens ride along freely, but at most one sequence gets a
        # multi-token chunk per step. Mixing several prompts' chunks in one ubatch
        # changes llama.cpp's numerics (measured: greedy outputs diverge), while this
        # rule keeps every output identical to decoding the sequence alone.
        room = nx.n_batch - nx.batch_size
        chunked = False
        for s in self.running:
            if room <= 0:
                break
            if s.generated > 0 and s.computed >= len(s.tokens) - 1:
                continue
            left = len(s.tokens) - s.computed
            if left > 1 and chunked:
                continue
            chunked = chunked or left > 1
            assert s.slot is not None
            end = min(len(s.tokens), s.computed + room)
            for pos in range(s.computed, end):
                last = pos == len(s.tokens) - 1
                idx = nx.batch_add(s.tokens[pos], pos, s.slot, last)
            plan.append((s, end - s.computed, idx if end == len(s.tokens) else -1))
            room -= end - s.computed
        return plan

    def _after_decode(self, plan: list[tuple[Seq, int, int]]) -> None:
        for s, n_added, idx in plan:
            assert s.slot is not None
            start = s.computed
            self.tree.extend(s.slot, s.tokens[start : start + n_added])
            self._slot_tokens[s.slot] = (s.tokens, start + n_added)
            s.prompt_computed += max(0, min(start + n_added, s.n_prompt) - start)
            s.computed = start + n_added
            if idx < 0:
                continue
            row = self.nx.logits(idx)
            self._sample_into(s, row)
            for f in s.followers:
                self._attach_follower(s, f, row)
            s.followers = []
        for s in [s for s in self.running if s.finish is not None]:
            self.running.remove(s)
            self._release(s)
            self._complete(s)

    def _attach_follower(self, leader: Seq, f: Seq, row: np.ndarray) -> None:
        """Give ``f`` its own slot sharing the leader's prompt cells, and its first token."""
        assert leader.slot is not None
        slot = self.free_slots.pop() if self.free_slots else None
        if slot is None and self.idle:
            victim = min(self.idle, key=self.idle.__getitem__)
            self.evict(victim)
            slot = self.free_slots.pop()
        f.leader = None
        if slot is None:
            # No slot now: it queues like any request and forks the cached prompt later.
            self.waiting.appendleft(f)
            return
        n = f.n_prompt
        self.nx.seq_copy(leader.slot, slot, n)
        self.tree.insert(slot, f.tokens[:n])
        self._slot_tokens[slot] = (f.tokens, n)
        f.slot, f.computed, f.prompt_cached = slot, n, n
        self.running.append(f)
        self._sample_into(f, row)
        if f.finish is not None:
            self.running.remove(f)
            self._release(f)
            self._complete(f)

    def _sample_into(self, s: Seq, row: np.ndarray) -> None:
        params = s.ticket.request.params
        if params.ignore_eos:
            row = row.copy()
            row[self.nx.eog_ids] = -np.inf
        if s.grammar is None:
            tok = sampler.sample(row, params, s.rng)
        else:
            tok = s.grammar.sample(row, params, s.rng)
        if params.logprobs:
            lp = sampler.log_softmax(row)
            top: tuple[tuple[str, float], ...] = ()
            if params.top_logprobs:
                alts = sampler.top_alternatives(lp, params.top_logprobs)
                top = tuple((self._piece_text(t), v) for t, v in alts)
            s.logprobs.append(TokenLogprob(self._piece_text(tok), float(lp[tok]), top))
        s.tokens.append(tok)
        if self.nx.is_eog(tok):
            s.finish = "stop"
            return
        s.text += self.nx.piece(tok)
        if params.stop:
            text = s.text.decode("utf-8", "ignore")
            hits = [(i, x) for x in params.stop if (i := text.find(x)) >= 0]
            if hits:
                cut, s.stop_reason = min(hits)
                s.text = text[:cut].encode()
                s.finish = "stop"
                return
        if s.generated >= params.max_tokens or len(s.tokens) >= self.max_seq_len:
            s.finish = "length"

    def _piece_text(self, tok: int) -> str:
        return self.nx.piece(tok).decode("utf-8", "replace")

    def _release(self, s: Seq) -> None:
        """The sequence leaves the batch; its computed KV stays as cache."""
        self._hold_admissions = False
        if s.slot is None:
            return
        self.idle[s.slot] = next(self._clock)
        s.slot = None

    def _complete(self, s: Seq) -> None:
        t = s.ticket
        now = time.perf_counter()
        usage = Usage(
            tokens_generated=s.generated,
            prompt_tokens_computed=s.prompt_computed,
            prompt_tokens_cached=s.prompt_cached,
            engine_calls=1 if s.index == 0 else 0,
            seconds=now - t.submitted,
        )
        t.results[s.index] = Completion(
            text=s.text.decode("utf-8", "ignore"),
            tokens=s.generated,
            finish_reason=s.finish or "stop",
            usage=usage,
            logprobs=tuple(s.logprobs) if t.request.params.logprobs else None,
            prompt_tokens=s.n_prompt,
            stop_reason=s.stop_reason,
        )
        t.done += 1
        if t.done == len(t.results) and not t.future.done():
            t.future.set_result([c for c in t.results if c is not None])

    def _make_room(self) -> None:
        """The KV cache is full: evict the oldest idle slot, else preempt a sequence."""
        if self.idle:
            self.evict(min(self.idle, key=self.idle.__getitem__))
            return
        victims = [s for s in self.running if not s.followers]
        if len(victims) <= 1 and len(self.running) <= 1:
            s = self.running[0]
            raise ContextOverflowError(
                f"a single sequence of {len(s.tokens)} tokens does not fit the KV cache"
            )
        victim = (victims or self.running)[-1]
        self.running.remove(victim)
        assert victim.slot is not None
        self.nx.seq_remove(victim.slot)
        self.tree.remove(victim.slot)
        self._slot_tokens.pop(victim.slot, None)
        self.free_slots.append(victim.slot)
        victim.slot, victim.computed = None, 0
        self.waiting.appendleft(victim)
        self.preemptions += 1
        self._hold_admissions = True

    def fail_all(self, exc: BaseException) -> None:
        """Something unexpected broke the step: fail every request, start clean."""
        seqs = list(self.running) + list(self.waiting)
        for s in seqs:
            seqs.extend(s.followers)
        for s in seqs:
            _fail(s.ticket, exc)
        self.running.clear()
        self.waiting.clear()
        self._reset()


def _fail(ticket: Ticket, exc: BaseException) -> None:
    if not ticket.future.done():
        ticket.future.set_exception(exc)
