"""The embedded engine on the real SmolLM2-135M model.

Most tests here run the engine in its exact mode (``flash_attn=True``, also what
llama.cpp picks by default on a CPU), in which an output does not depend on what it was
batched with or served from: that is the guarantee they check bit for bit, in each KV
layout (``layout.LAYOUTS``: the ``engine`` fixture is parametrized over them). The fast
one-problem mode (flash attention off) is checked at the end for what it promises.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from engine_contract import EngineContract

from ponder import models
from ponder.engines.base import ContextOverflowError
from ponder.engines.llamacpp import native, sampler
from ponder.engines.llamacpp.engine import LlamaCppEngine
from ponder.types import GREEDY, Request, SamplingParams

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


def chat(q: str) -> tuple[dict[str, str], ...]:
    return ({"role": "user", "content": q},)


def greedy(q: str, n_tokens: int = 24) -> Request:
    return Request(chat(q), GREEDY.with_(max_tokens=n_tokens, logprobs=True))


def token_ids(c):
    return [t.token for t in c.logprobs]


# Per layout: the shared cache as the library sizes it; 32 streams of 768 cells each.
SIZES = {"shared": (8192, 48), "streams": (32 * 768, 32)}


@pytest.fixture(scope="module", params=list(SIZES))
def engine(small_model: str, request: pytest.FixtureRequest) -> Iterator[LlamaCppEngine]:
    """The exact (batch- and cache-invariant) engine this module checks, in each layout."""
    n_ctx, n_parallel = SIZES[request.param]
    eng = LlamaCppEngine(
        small_model, n_ctx=n_ctx, n_parallel=n_parallel, seed=0, flash_attn=True,
        layout=request.param,
    )  # fmt: skip
    assert eng.layout == request.param
    yield eng
    eng.close()


class TestContract(EngineContract):
    """The engine contract (tests/engine_contract.py) on the embedded engine."""

    @pytest.fixture
    def contract_engine(self, engine):
        return engine


def test_greedy_is_deterministic(engine):
    a = engine.generate_sync([greedy(QUESTIONS[0])])[0][0]
    engine.clear_cache()
    b = engine.generate_sync([greedy(QUESTIONS[0])])[0][0]
    assert a.text and a.text == b.text and token_ids(a) == token_ids(b)


def test_seeds(engine):
    p = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, max_tokens=24)
    a = engine.generate_sync([Request(chat(QUESTIONS[2]), p.with_(seed=11))])[0][0]
    b = engine.generate_sync([Request(chat(QUESTIONS[2]), p.with_(seed=11))])[0][0]
    c = engine.generate_sync([Request(chat(QUESTIONS[2]), p.with_(seed=12))])[0][0]
    assert a.text == b.text
    assert a.text != c.text
    # The n samples of one request use different streams.
    many = engine.generate_sync([Request(chat(QUESTIONS[2]), p.with_(seed=11), n=4)])[0]
    assert len({m.text for m in many}) > 1
    assert many[0].text == a.text


def test_each_prompt_draws_its_own_random_numbers(engine, monkeypatch):
    """The same seed on different prompts must not draw the same random numbers: seeded
    by (seed, sample) alone, every problem of an evaluation (all seeded 0) made its i-th
    sample's choices from one stream, and those samples were alike across problems
    (docs/EVALS.md, "Seeds"). Recorded: each sequence's generator state at its first draw."""
    states: dict[int, int] = {}
    real = sampler.sample

    def recording(logits, params, rng):
        states.setdefault(id(rng), rng.bit_generator.state["state"]["state"])
        return real(logits, params, rng)

    monkeypatch.setattr(sampler, "sample", recording)
    p = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, max_tokens=2, seed=11)

    def first_states(question: str) -> set[int]:
        states.clear()
        engine.generate_sync([Request(chat(question), p, n=2)])
        assert len(set(states.values())) == 2  # the two samples of a request differ
        return set(states.values())

    france, colours = first_states(QUESTIONS[0]), first_states(QUESTIONS[1])
    assert first_states(QUESTIONS[0]) == france  # the same prompt and seed: the same numbers
    assert not france & colours


def test_batching_changes_nothing(engine):
    engine.clear_cache()
    together = engine.generate_sync([greedy(q, 32) for q in QUESTIONS])
    alone = []
    for q in QUESTIONS:
        engine.clear_cache()
        alone.append(engine.generate_sync([greedy(q, 32)])[0][0])
    for t, a in zip(together, alone, strict=True):
        assert token_ids(t[0]) == token_ids(a)
        assert t[0].text == a.text


def test_caching_changes_nothing(engine):
    engine.clear_cache()
    base = "The history of the printing press begins"
    first = engine.generate_sync([Request(base, GREEDY.with_(max_tokens=40))])[0][0]
    extended = base + first.text[: len(first.text) // 2]
    warm = engine.generate_sync([Request(extended, GREEDY.with_(max_tokens=24, logprobs=True))])[0][
        0
    ]
    assert warm.usage.prompt_tokens_cached > 0
    engine.clear_cache()
    cold = engine.generate_sync([Request(extended, GREEDY.with_(max_tokens=24, logprobs=True))])[0][
        0
    ]
    assert cold.usage.prompt_tokens_cached == 0
    assert token_ids(warm) == token_ids(cold)
    for w, c in zip(warm.logprobs, cold.logprobs, strict=True):
        assert w.logprob == pytest.approx(c.logprob, abs=1e-4)


def test_fork_computes_prompt_once(engine):
    engine.clear_cache()
    words = " ".join(f"item{i}" for i in range(150))
    prompt = f"Here is a list: {words}. Continue it:"
    n_prompt = len(engine.tokenize(prompt))
    assert n_prompt >= 300
    outs = engine.generate_sync([Request(prompt, SamplingParams(max_tokens=8, seed=3), n=16)])[0]
    assert len(outs) == 16
    computed = sum(o.usage.prompt_tokens_computed for o in outs)
    cached = sum(o.usage.prompt_tokens_cached for o in outs)
    assert computed == n_prompt
    assert cached == 15 * n_prompt
    assert all(o.prompt_tokens == n_prompt for o in outs)


def test_prefix_of_finished_sequence_is_reused(engine):
    engine.clear_cache()
    q = chat("Count from one to ten in words.")
    first = engine.generate_sync([Request(q, GREEDY.with_(max_tokens=30))])[0][0]
    second = engine.generate_sync(
        [Request(q, GREEDY.with_(max_tokens=30), partial=first.text[:20])]
    )[0][0]
    # everything up to the partial text's boundary comes from the cache
    assert second.usage.prompt_tokens_cached >= first.prompt_tokens
    assert second.usage.prompt_tokens_computed <= 8


def test_stop_strings_and_max_tokens(engine):
    p = GREEDY.with_(max_tokens=40, stop=(" 7",))
    [[c]] = engine.generate_sync([Request("Counting: 1 2 3 4 5 6", p)])
    assert c.finish_reason == "stop"
    assert " 7" not in c.text
    [[d]] = engine.generate_sync([Request("Counting: 1 2 3 4 5 6", GREEDY.with_(max_tokens=5))])
    assert d.tokens == 5 and d.finish_reason == "length"


def test_logprobs_are_valid(engine):
    p = SamplingParams(temperature=0.9, max_tokens=16, seed=4, logprobs=True, top_logprobs=5)
    [[c]] = engine.generate_sync([Request(chat(QUESTIONS[6]), p)])
    assert c.logprobs is not None and len(c.logprobs) == c.tokens
    for t in c.logprobs:
        assert math.isfinite(t.logprob) and t.logprob <= 0
        values = [v for _, v in t.top]
        assert values == sorted(values, reverse=True)
        assert sum(math.exp(v) for v in values) <= 1 + 1e-6
        assert t.logprob <= values[0] + 1e-9
    g = engine.generate_sync(
        [Request(chat(QUESTIONS[6]), GREEDY.with_(max_tokens=8, logprobs=True, top_logprobs=1))]
    )[0][0]
    for t in g.logprobs:
        assert t.token == t.top[0][0]


def test_context_overflow_fails_alone(engine):
    huge = "hello " * (engine.max_seq_len + 10)
    import asyncio

    res = asyncio.run(
        engine.generate_settled(
            [greedy(QUESTIONS[3], 8), Request(huge, GREEDY.with_(max_tokens=4))]
        )
    )
    assert isinstance(res[1], ContextOverflowError)
    assert "tokens" in str(res[1])
    assert isinstance(res[0], list) and res[0][0].tokens > 0
    with pytest.raises(ContextOverflowError):
        engine.generate_sync([Request(huge, GREEDY.with_(max_tokens=4))])


def agrees_up_to_near_tie(got, ref, gap=0.15):
    """Token-identical to ``ref``, or first differing where ``ref`` had a near-tie.

    llama.cpp's attention sums in KV-cell order, and cell order depends on what else
    the cache holds, so greedy decoding may flip between two tokens whose
    log-probabilities differ by f16 rounding (seen: up to ~0.06 nats). Anything else
    is a real error.
    """
    a, b = token_ids(got), token_ids(ref)
    if a == b:
        return True
    d = next(i for i in range(min(len(a), len(b)) + 1) if i >= min(len(a), len(b)) or a[i] != b[i])
    if d >= min(len(a), len(b)):
        return False
    top = ref.logprobs[d].top
    return len(top) >= 2 and top[0][1] - top[1][1] < gap and a[d] in (top[0][0], top[1][0])


def test_concurrent_threads(engine):
    prompts = [f"{QUESTIONS[i % 8]} (variant {i})" for i in range(20)]

    def run(q):
        return engine.generate_sync(
            [Request(chat(q), GREEDY.with_(max_tokens=16, logprobs=True, top_logprobs=2))]
        )[0][0]

    expected = []
    for q in prompts:
        engine.clear_cache()
        expected.append(run(q))
    with ThreadPoolExecutor(max_workers=6) as pool:
        got = list(pool.map(run, prompts))
    assert len(got) == 20
    exact = sum(token_ids(g) == token_ids(e) for g, e in zip(got, expected, strict=True))
    assert all(agrees_up_to_near_tie(g, e) for g, e in zip(got, expected, strict=True))
    assert exact >= 15


def test_kv_pressure_preempts_and_recovers(small_model):
    # 6 sequences of ~110 tokens in a 256-cell shared cache: the scheduler must evict and
    # preempt (dropping KV, recomputing later) and still lose or repeat no token.
    reqs = [
        Request(
            f"Chapter {i}. Once upon a time, in a land far away,",
            GREEDY.with_(max_tokens=100, logprobs=True),
        )
        for i in range(6)
    ]
    with LlamaCppEngine(small_model, n_ctx=256, n_parallel=8, layout="shared") as small:
        got = [g[0] for g in small.generate_sync(reqs)]
        assert small.stats()["preemptions"] > 0
        again = small.generate_sync([reqs[0]])[0][0]
    for g in got:
        assert g.tokens == 100 and g.finish_reason == "length"
        assert "".join(t.token for t in g.logprobs) == g.text
    assert again.tokens == 100


def test_bad_model_path():
    with pytest.raises(models.ModelError, match="neither a known model"):
        LlamaCppEngine("/no/such/model.gguf")


def test_not_a_gguf(tmp_path):
    f = tmp_path / "x.gguf"
    f.write_bytes(b"not a model at all")
    with pytest.raises(models.ModelError, match="not a GGUF"):
        LlamaCppEngine(str(f))


def test_wrong_hash_and_truncation(tmp_path, monkeypatch):
    monkeypatch.setenv("PONDER_CACHE", str(tmp_path))
    spec = models.spec_for(models.TEST_MODEL)
    path = models.model_path(models.TEST_MODEL)
    path.parent.mkdir(parents=True)
    with path.open("wb") as f:
        f.write(b"GGUF")
    with pytest.raises(models.ModelError, match="truncated"):
        models.resolve(models.TEST_MODEL)
    with path.open("r+b") as f:
        f.truncate(spec.size)
    with pytest.raises(models.ModelError, match="SHA-256"):
        LlamaCppEngine(models.TEST_MODEL)
    path.unlink()
    with pytest.raises(models.ModelError, match="ponder models pull"):
        models.resolve(models.TEST_MODEL)


def test_unknown_model_name():
    with pytest.raises(models.ModelError, match="unknown model"):
        models.spec_for("gpt-17")


def test_pull_reuses_verified_file(small_model):
    path = models.pull(small_model)
    assert Path(path).stat().st_size == models.spec_for(small_model).size
    assert os.access(path, os.R_OK)


# ---- attention settings ----------------------------------------------------------------


def test_flash_attention_choice(monkeypatch):
    monkeypatch.delenv("PONDER_FLASH_ATTN", raising=False)
    assert native.flash_attn_type(True) == 1
    assert native.flash_attn_type(False) == 0
    assert native.flash_attn_type() == -1  # llama.cpp's choice: the exact mode on a CPU
    import llama_cpp

    gpu = llama_cpp.llama_supports_gpu_offload()
    assert native.one_problem_flash_attn() is (None if gpu else False)
    monkeypatch.setenv("PONDER_FLASH_ATTN", "1")
    assert native.flash_attn_type() == 1
    monkeypatch.setenv("PONDER_FLASH_ATTN", "0")
    assert native.flash_attn_type() == 0


def test_fast_mode_repeats_from_the_same_cache_state(small_model, monkeypatch):
    """Without flash attention an output may differ in the last bits with its batch and
    cache layout, but the same requests from the same (fresh) cache repeat exactly, and
    prefix sharing still computes a forked prompt once."""
    monkeypatch.delenv("PONDER_FLASH_ATTN", raising=False)
    with LlamaCppEngine(small_model, n_ctx=4096, n_parallel=16, seed=0, flash_attn=False) as eng:
        reqs = [greedy(q, 24) for q in QUESTIONS[:4]]
        reqs.append(Request(chat(QUESTIONS[2]), SamplingParams(max_tokens=24, seed=5), n=4))
        first = eng.generate_sync(reqs)
        eng.clear_cache()
        again = eng.generate_sync(reqs)
        assert [[c.text for c in r] for r in first] == [[c.text for c in r] for r in again]
        assert all(c.text for r in first for c in r)
        samples = first[-1]
        assert len({c.text for c in samples}) > 1
        assert sum(c.usage.prompt_tokens_computed for c in samples) == samples[0].prompt_tokens


def test_a_failed_step_fails_its_requests_and_the_engine_goes_on(small_model):
    from ponder.engines.base import EngineError

    with LlamaCppEngine(small_model, n_ctx=2048, n_parallel=8, seed=0) as eng:
        before = eng.generate_sync([greedy(QUESTIONS[0], 12)])[0][0]
        real = eng._nx.decode
        eng._nx.decode = lambda: 2  # llama_decode reports an error
        with pytest.raises(EngineError, match="llama_decode failed"):
            eng.generate_sync([greedy(QUESTIONS[1], 12)])
        eng._nx.decode = real
        # the failed step emptied the cache (the next call computes its whole prompt)
        after = eng.generate_sync([greedy(QUESTIONS[0], 12)])[0][0]
        assert after.text == before.text and after.usage.prompt_tokens_cached == 0


class Fatal(BaseException):
    """An error the scheduler's step does not catch (as a bug or interpreter trouble)."""


def test_a_bad_seed_fails_its_request_alone(small_model):
    """Seeds a caller may pass by mistake fail their own request; the engine goes on."""
    sampled = SamplingParams(temperature=1.0, max_tokens=6)
    with LlamaCppEngine(small_model, n_ctx=2048, n_parallel=8, seed=0) as eng:
        bad = [-1, "7", 1.5, True]
        futures = eng.submit_many(
            [Request(chat(QUESTIONS[0]), sampled.with_(seed=s)) for s in bad]
            + [Request(chat(QUESTIONS[1]), sampled.with_(seed=2**70))]
        )
        for fut, seed in zip(futures[:-1], bad, strict=True):
            with pytest.raises(
                ValueError, match=f"seed must be an integer >= 0 or None, got {seed!r}"
            ):
                fut.result(timeout=30)
        assert futures[-1].result(timeout=30)[0].text
        assert eng.generate_sync([greedy(QUESTIONS[2], 6)])[0][0].text
        assert eng.failure is None


def test_a_dead_scheduler_thread_fails_everything_at_once(small_model):
    from ponder import solve
    from ponder.engines.base import EngineError

    eng = LlamaCppEngine(small_model, n_ctx=2048, n_parallel=8, seed=0)
    try:
        assert eng.failure is None

        def broken() -> None:
            raise Fatal("boom")

        eng._sched.step = broken  # type: ignore[method-assign]
        waiting = eng.submit(greedy(QUESTIONS[0], 6))
        with pytest.raises(EngineError, match="Fatal: boom"):
            waiting.result(timeout=30)
        assert eng.failure == "the engine stopped: Fatal: boom"
        started = time.perf_counter()
        with pytest.raises(EngineError, match="Fatal: boom"):
            eng.submit(greedy(QUESTIONS[1], 6)).result(timeout=30)
        with pytest.raises(EngineError, match="Fatal: boom"):
            eng.clear_cache()
        with pytest.raises(EngineError, match="Fatal: boom"):
            solve(QUESTIONS[2], "self-consistency", 2, engine=eng, max_tokens=6)
        assert time.perf_counter() - started < 5
    finally:
        closer = threading.Thread(target=eng.close, daemon=True)
        closer.start()
        closer.join(30)
        assert not closer.is_alive()


def test_close_right_after_submit_does_not_hang(small_model):
    """The scheduler takes the close sentinel while admitting a request: close returns
    and the request fails as closed."""
    from ponder.engines.base import EngineError

    eng = LlamaCppEngine(small_model, n_ctx=2048, n_parallel=8, seed=0)
    admit = eng._sched.add

    def admit_once_closing(ticket, seed) -> None:
        deadline = time.monotonic() + 10
        while not eng._closed and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.2)  # close() has queued its sentinel by now
        admit(ticket, seed)

    eng._sched.add = admit_once_closing  # type: ignore[method-assign]
    fut = eng.submit(greedy(QUESTIONS[0], 4))
    closer = threading.Thread(target=eng.close, daemon=True)
    closer.start()
    closer.join(30)
    assert not closer.is_alive(), "close() hung"
    with pytest.raises(EngineError, match="closed"):
        fut.result(timeout=1)


# ---- which chat template renders the prompt ---------------------------------------------

SMOL_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def test_the_model_own_jinja_template_is_rendered_when_asked(small_model: str) -> None:
    from ponder.evals.runner import describe_model

    built_in = LlamaCppEngine(small_model, n_ctx=512, n_parallel=2)
    jinja = LlamaCppEngine(small_model, n_ctx=512, n_parallel=2, chat_template="jinja")
    try:
        asked = Request(chat("Name three colours."), GREEDY.with_(max_tokens=6), partial="Red")
        plain, full = built_in.render(asked), jinja.render(asked)
        # llama.cpp's built-in template adds no system message; the model's own adds its
        # default one, and both end with the continued assistant text
        assert SMOL_SYSTEM not in plain and plain.endswith("<|im_start|>assistant\nRed")
        assert full.startswith(f"<|im_start|>system\n{SMOL_SYSTEM}<|im_end|>\n")
        assert full.endswith(plain)
        # the prompt the model is given is that text: one more turn's tokens
        [[a]] = built_in.generate_sync([asked])
        [[b]] = jinja.generate_sync([asked])
        assert b.prompt_tokens > a.prompt_tokens + 10 and b.tokens >= 1
        # a store records the Jinja template, so its runs never mix with built-in ones
        assert "chat_template" not in describe_model(small_model, built_in)
        assert describe_model(small_model, jinja)["chat_template"] == jinja.chat_template
        assert jinja.chat_template is not None and jinja.chat_template.startswith("jinja:")
    finally:
        built_in.close()
        jinja.close()


def test_a_chat_template_given_as_jinja_source_renders_and_bad_ones_say_why(
    small_model: str,
) -> None:
    source = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}[assistant] "
    engine = LlamaCppEngine(small_model, n_ctx=512, n_parallel=2, chat_template=source)
    try:
        assert engine.render(Request(chat("Hi"), GREEDY)) == "[user] Hi\n[assistant] "
    finally:
        engine.close()
    with pytest.raises(ValueError, match='chat_template must be "jinja"'):
        LlamaCppEngine(small_model, n_ctx=512, n_parallel=2, chat_template=" ")
    with pytest.raises(ValueError, match="does not parse"):
        LlamaCppEngine(small_model, n_ctx=512, n_parallel=2, chat_template="{% for %}")
