"""The engine contract: what every engine must do, checked on a real small model.

A test module runs it against an engine by subclassing ``EngineContract`` and providing
the fixture ``contract_engine``::

    class TestContract(EngineContract):
        @pytest.fixture
        def contract_engine(self, engine):
            return engine

Prompts are short and ``max_tokens`` small so that each test takes a few seconds on the
SmolLM2-135M test model.
"""

from __future__ import annotations

import asyncio
import math
from concurrent.futures import ThreadPoolExecutor

import pytest

from ponder.engines.base import ContextOverflowError, Engine
from ponder.types import GREEDY, Completion, Request, SamplingParams, Usage

QUESTIONS = [
    "What is the capital of France?",
    "Name three colours.",
    "Write a haiku about the sea.",
    "What is 12 plus 30?",
    "Explain what a prime number is.",
    "Give me a word that rhymes with cat.",
    "Why is the sky blue?",
    "List two animals that can fly.",
]

RANDOM = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, max_tokens=24)


def chat(q: str) -> tuple[dict[str, str], ...]:
    return ({"role": "user", "content": q},)


def greedy(q: str, n_tokens: int = 24, top: int = 0) -> Request:
    return Request(chat(q), GREEDY.with_(max_tokens=n_tokens, logprobs=True, top_logprobs=top))


def one(engine: Engine, request: Request) -> Completion:
    [[c]] = engine.generate_sync([request])
    return c


def fresh(engine: Engine) -> Engine:
    """Empty the engine's prefix cache where it has one. A seeded sample is reproducible
    from the same cache state: llama.cpp's attention numerics depend on how many KV cells
    are in use (its padded ``n_kv``), which moves logits by up to ~0.1 and can change a
    sampled token once the cache has filled past another 256 cells (README,
    "Reproducibility")."""
    clear = getattr(engine, "clear_cache", None)
    if clear is not None:
        clear()
    return engine


def tokens_of(c: Completion) -> list[str]:
    assert c.logprobs is not None
    return [t.token for t in c.logprobs]


def agrees_up_to_near_tie(got: Completion, ref: Completion, gap: float = 0.15) -> bool:
    """Token-identical to ``ref``, or first differing where ``ref`` had a near-tie.

    Engines that batch may flip greedy decoding between two tokens whose
    log-probabilities differ by rounding; ``ref`` must carry at least 2 alternatives.
    """
    a, b = tokens_of(got), tokens_of(ref)
    if a == b:
        return True
    d = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), None)
    if d is None or ref.logprobs is None:
        return False
    top = ref.logprobs[d].top
    return len(top) >= 2 and top[0][1] - top[1][1] < gap and a[d] in (top[0][0], top[1][0])


class EngineContract:
    """Behaviour shared by every engine. Subclasses provide ``contract_engine``."""

    @pytest.fixture
    def contract_engine(self) -> Engine:
        raise NotImplementedError("a contract test class provides the engine")

    def test_is_an_engine(self, contract_engine):
        assert isinstance(contract_engine, Engine)
        caps = contract_engine.capabilities
        assert caps.max_parallel >= 1 and caps.max_context > 0

    def test_greedy_is_deterministic(self, contract_engine):
        a = one(contract_engine, greedy(QUESTIONS[0]))
        b = one(contract_engine, greedy(QUESTIONS[0]))
        assert a.text and a.text == b.text and tokens_of(a) == tokens_of(b)
        plain = GREEDY.with_(max_tokens=24)
        both = contract_engine.generate_sync([Request(chat(QUESTIONS[0]), plain, n=2)])[0]
        assert [c.text for c in both] == [a.text, a.text]

    def test_same_seed_same_sample_different_seeds_differ(self, contract_engine):
        a = one(contract_engine, Request(chat(QUESTIONS[2]), RANDOM.with_(seed=11)))
        b = one(contract_engine, Request(chat(QUESTIONS[2]), RANDOM.with_(seed=11)))
        c = one(contract_engine, Request(chat(QUESTIONS[2]), RANDOM.with_(seed=12)))
        assert a.text == b.text
        assert a.text != c.text

    def test_n_samples_are_distinct_and_reproducible(self, contract_engine):
        req = Request(chat(QUESTIONS[2]), RANDOM.with_(seed=11), n=4)
        many = fresh(contract_engine).generate_sync([req])[0]
        again = fresh(contract_engine).generate_sync([req])[0]
        alone = one(fresh(contract_engine), Request(chat(QUESTIONS[2]), RANDOM.with_(seed=11)))
        assert len(many) == 4 and all(m.tokens > 0 for m in many)
        assert len({m.text for m in many}) > 1
        assert [m.text for m in many] == [m.text for m in again]
        assert many[0].text == alone.text

    def test_stop_string_cuts_the_text_and_is_reported(self, contract_engine):
        p = GREEDY.with_(max_tokens=40, stop=(" 7", "zebra"))
        c = one(contract_engine, Request("Counting: 1 2 3 4 5 6", p))
        assert c.finish_reason == "stop"
        assert c.stop_reason == " 7"
        assert " 7" not in c.text
        # Ended by the end of the turn: finished, with no stop string to report.
        d = one(
            contract_engine,
            Request(chat("What is 2+2?"), GREEDY.with_(max_tokens=48, stop=("zebra",))),
        )
        assert d.finish_reason == "stop" and d.stop_reason is None and d.tokens < 48

    def test_max_tokens_ends_with_length(self, contract_engine):
        d = one(contract_engine, Request("Counting: 1 2 3 4 5 6", GREEDY.with_(max_tokens=5)))
        assert d.tokens == 5 and d.finish_reason == "length" and d.stop_reason is None

    def test_logprobs_are_valid(self, contract_engine):
        p = SamplingParams(temperature=0.9, max_tokens=16, seed=4, logprobs=True, top_logprobs=5)
        c = one(fresh(contract_engine), Request(chat(QUESTIONS[6]), p))
        assert c.logprobs is not None and len(c.logprobs) == c.tokens
        for t in c.logprobs:
            assert math.isfinite(t.logprob) and t.logprob <= 0
            values = [v for _, v in t.top]
            assert len(values) == 5
            assert values == sorted(values, reverse=True)
            assert sum(math.exp(v) for v in values) <= 1 + 1e-5
            assert t.logprob <= values[0] + 1e-6
        g = one(contract_engine, greedy(QUESTIONS[6], 8, top=1))
        assert g.logprobs is not None
        for t in g.logprobs:
            assert t.token == t.top[0][0]
        plain = one(fresh(contract_engine), Request(chat(QUESTIONS[6]), p.with_(logprobs=False)))
        assert plain.logprobs is None and plain.text == c.text

    def test_partial_answer_is_continued(self, contract_engine):
        full = one(contract_engine, greedy(QUESTIONS[4], 32))
        cut = full.text.rfind(" ", 0, len(full.text) // 2)
        assert cut > 0
        partial = full.text[:cut]
        rest = one(
            contract_engine,
            Request(chat(QUESTIONS[4]), GREEDY.with_(max_tokens=8), partial=partial),
        )
        joined = partial + rest.text
        n = min(len(joined), len(full.text))
        assert rest.text and joined[:n] == full.text[:n]

    def test_too_long_prompt_fails_alone(self, contract_engine):
        huge = "hello " * (contract_engine.capabilities.max_context + 10)
        res = asyncio.run(
            contract_engine.generate_settled(
                [greedy(QUESTIONS[3], 8), Request(huge, GREEDY.with_(max_tokens=4))]
            )
        )
        assert isinstance(res[1], ContextOverflowError)
        assert isinstance(res[0], list) and res[0][0].tokens > 0
        with pytest.raises(ContextOverflowError):
            contract_engine.generate_sync([Request(huge, GREEDY.with_(max_tokens=4))])

    def test_concurrent_threads(self, contract_engine):
        prompts = [f"{QUESTIONS[i]} (variant {i})" for i in range(4)]

        def run(q: str) -> Completion:
            return one(contract_engine, greedy(q, 8, top=2))

        expected = {q: run(q) for q in prompts}
        asked = [prompts[i % 4] for i in range(20)]
        with ThreadPoolExecutor(max_workers=6) as pool:
            got = list(pool.map(run, asked))
        assert len(got) == 20 and all(g.tokens > 0 for g in got)
        assert all(agrees_up_to_near_tie(g, expected[q]) for g, q in zip(got, asked, strict=True))

    def test_usage_adds_up(self, contract_engine):
        reqs = [
            Request(chat(QUESTIONS[1]), RANDOM.with_(seed=5, max_tokens=10), n=3),
            Request("Once upon a time", GREEDY.with_(max_tokens=6)),
        ]
        outs = contract_engine.generate_sync(reqs)
        assert [len(o) for o in outs] == [3, 1]
        for comps in outs:
            assert sum(c.usage.engine_calls for c in comps) == 1
            for c in comps:
                assert c.usage.tokens_generated == c.tokens > 0
                assert c.prompt_tokens > 0 and c.usage.prompt_tokens == c.prompt_tokens
                assert c.usage.seconds >= 0
        flat = [c for comps in outs for c in comps]
        total = Usage.total([c.usage for c in flat])
        assert total.tokens_generated == sum(c.tokens for c in flat)
        assert total.prompt_tokens == sum(c.prompt_tokens for c in flat)
        assert total.engine_calls == 2
