"""The engine's KV layouts (``ponder/engines/llamacpp/layout.py``) on the real small model:
how one is chosen (``auto``: streams sized to a memory budget, the shared cache for a
request that outgrows a stream), that the streams layout (one KV stream per sequence)
computes exactly what the shared one does in exact mode, forks by copying a stream, and
stops a sequence at its stream's end; and that contexts share one loaded model."""

from __future__ import annotations

import pytest

from ponder import models
from ponder.engines.base import ContextOverflowError
from ponder.engines.llamacpp import layout as layout_module
from ponder.engines.llamacpp.engine import LlamaCppEngine
from ponder.engines.llamacpp.layout import (
    choose_layout,
    plan_layout,
    stream_rungs,
    stream_sizing,
)
from ponder.engines.llamacpp.native import NativeContext, NativeModel
from ponder.types import GREEDY, Request, SamplingParams


def chat(q: str) -> tuple[dict[str, str], ...]:
    return ({"role": "user", "content": q},)


def test_auto_is_the_default_and_sizes_its_streams_to_a_memory_budget(monkeypatch):
    monkeypatch.delenv("PONDER_KV_LAYOUT", raising=False)
    assert choose_layout(None, 16384, 64) == ("auto", 16384)
    assert choose_layout("shared", 16384, 64) == ("shared", 16384)
    assert choose_layout("streams", 1024, 8) == ("streams", 1024)
    # the default model, 12 KiB a cell: 41 streams of 1,536 cells and the spare in 768 MiB
    assert stream_sizing(16384, 64, 12288) == (41, 1536)
    assert 42 * 1536 * 12288 <= 768 * 2**20 < 43 * 1536 * 12288
    assert stream_sizing(16384, 16, 12288) == (16, 1536)  # no more than n_parallel
    assert stream_sizing(1024, 64, 12288) == (63, 1024)  # no longer than n_ctx
    assert stream_sizing(16384, 64, 12288, budget_mb=100) is None  # 4 streams: too few
    # SmolLM2-135M, 22.5 KiB a cell: 21 streams, too few for a search's 16 branches and
    # their 16 cached parents, so auto keeps the shared cache; with 8 slots asked, 8 fit
    assert stream_sizing(16384, 64, 23040) is None
    assert stream_sizing(16384, 8, 23040) == (8, 1536)
    assert plan_layout("auto", 16384, 64, 12288, budget_mb=100).mode == "shared"
    assert plan_layout("auto", 16384, 64, 12288).stream_slots == 41
    assert plan_layout("shared", 16384, 64, 12288).stream_slots == 0


def test_auto_starts_in_short_streams_when_they_give_more_slots():
    # the default model: 64 streams of 768 cells (84 fit; n_parallel caps them) before
    # the 41 of 1,536, in the same 768 MiB
    assert stream_rungs(16384, 64, 12288) == ((64, 768), (41, 1536))
    plan = plan_layout("auto", 16384, 64, 12288)
    assert plan.rungs == ((64, 768), (41, 1536))
    assert (plan.stream_slots, plan.stream_cells) == (41, 1536)  # the full-length rung
    # no short rung where it gives no more slots, where its streams would hold fewer than
    # 512 cells, or where the full-length streams are too few (auto keeps the shared cache)
    assert stream_rungs(16384, 16, 12288) == ((16, 1536),)
    assert stream_rungs(16384, 64, 12288, stream_cells=768) == ((64, 768),)
    assert stream_rungs(16384, 64, 23040) == ()
    assert plan_layout("auto", 16384, 64, 23040).rungs == ()
    assert plan_layout("shared", 16384, 64, 12288).rungs == ()


def test_the_environment_can_force_a_layout_for_measurements(monkeypatch):
    monkeypatch.setenv("PONDER_KV_LAYOUT", "streams:1536")
    assert choose_layout(None, 16384, 64) == ("streams", 64 * 1536)
    assert choose_layout("shared", 16384, 64) == ("shared", 16384)  # an explicit choice wins
    monkeypatch.setenv("PONDER_KV_LAYOUT", "shared")
    assert choose_layout(None, 16384, 64)[0] == "shared"
    monkeypatch.setenv("PONDER_KV_LAYOUT", "auto")
    assert choose_layout(None, 16384, 64)[0] == "auto"
    monkeypatch.setenv("PONDER_KV_LAYOUT", "streams")
    with pytest.raises(ValueError, match="it needs >= 64"):
        choose_layout(None, 1024, 64)
    monkeypatch.setenv("PONDER_KV_LAYOUT", "paged:12")
    with pytest.raises(ValueError, match="PONDER_KV_LAYOUT must be auto, shared, streams or"):
        choose_layout(None, 16384, 64)


def test_auto_runs_a_request_that_outgrows_a_stream_in_the_shared_cache(small_model, monkeypatch):
    """``auto`` runs in streams; a request whose prompt plus ``max_tokens`` does not fit a
    stream waits for the streams to drain and runs whole in the shared cache; the next
    ones that fit go back to streams. In exact mode the moves change no output."""
    monkeypatch.delenv("PONDER_KV_LAYOUT", raising=False)
    p = GREEDY.with_(ignore_eos=True)
    short = Request(chat("Name a colour."), p.with_(max_tokens=8))
    long = Request(chat("Tell a story."), p.with_(max_tokens=200))
    with LlamaCppEngine(
        small_model, n_ctx=2048, n_parallel=8, stream_cells=128, seed=0, flash_attn=True
    ) as eng:
        assert (eng.layout_mode, eng.layout) == ("auto", "streams")
        assert eng.max_seq_len == 2048 and eng.capabilities.max_parallel == 8
        [first] = eng.generate_sync([short])
        [[story]] = eng.generate_sync([long])
        assert eng.layout == "shared" and eng.stats()["relayouts"] == 1
        assert story.tokens == 200  # not cut at the stream's 128 cells
        [again] = eng.generate_sync([short])
        assert eng.layout == "streams" and eng.stats()["relayouts"] == 2
        assert again[0].text == first[0].text
        # both kinds in one call: each runs in its layout, answers in order
        mixed = eng.generate_sync([short, long, short])
        assert [r[0].tokens for r in mixed] == [8, 200, 8]
        assert mixed[0][0].text == mixed[2][0].text == first[0].text
        assert mixed[1][0].text == story.text
        assert eng.stats()["relayouts"] == 4 and eng.stats()["held"] == 0


def test_auto_moves_to_longer_streams_for_a_request_that_needs_them_and_stays(
    small_model, monkeypatch
):
    """With two stream sizes, ``auto`` starts in the short streams, moves to the long ones
    for a request that outgrows a short stream and stays there (no move back and forth
    between sizes), goes to the shared cache for a request no stream holds, and comes
    back from there to the short streams. In exact mode no move changes an output."""
    monkeypatch.delenv("PONDER_KV_LAYOUT", raising=False)
    # the rungs at half the real sizes (short streams of 256 cells, not 512), so the
    # requests that outgrow them are half as long to decode
    monkeypatch.setattr(layout_module, "MIN_SHORT_STREAM_CELLS", 256)
    p = GREEDY.with_(ignore_eos=True)
    short = Request(chat("Name a colour."), p.with_(max_tokens=8))
    middle = Request(chat("Tell a story."), p.with_(max_tokens=300))
    long = Request(chat("Tell a story."), p.with_(max_tokens=550))
    # SmolLM2-135M, 22.5 KiB a cell: 34 streams of 512 cells in 400 MiB, or 64 of 256
    with LlamaCppEngine(
        small_model, n_ctx=2048, n_parallel=64, stream_cells=512, kv_memory_mb=400,
        seed=0, flash_attn=True,
    ) as eng:  # fmt: skip
        assert eng._plan.rungs == ((64, 256), (34, 512))
        assert (eng.layout, eng.stream_cells, eng.capabilities.max_parallel) == (
            "streams", 256, 64,
        )  # fmt: skip
        [first] = eng.generate_sync([short])
        assert (eng.stats()["relayouts"], eng.stats()["stream_cells"]) == (0, 256)
        [[story]] = eng.generate_sync([middle])
        assert (eng.layout, eng.stream_cells, eng.stats()["relayouts"]) == ("streams", 512, 1)
        assert story.tokens == 300
        [again] = eng.generate_sync([short])  # fits the long streams: no move
        assert (eng.stream_cells, eng.stats()["relayouts"]) == (512, 1)
        assert again[0].text == first[0].text
        [[longer]] = eng.generate_sync([long])
        assert (eng.layout, eng.stats()["relayouts"]) == ("shared", 2)
        assert longer.tokens == 550 and longer.text.startswith(story.text)
        [third] = eng.generate_sync([short])
        assert (eng.layout, eng.stream_cells, eng.stats()["relayouts"]) == ("streams", 256, 3)
        assert third[0].text == first[0].text


def test_a_request_held_for_the_other_layout_can_be_cancelled(small_model, monkeypatch):
    monkeypatch.delenv("PONDER_KV_LAYOUT", raising=False)
    p = GREEDY.with_(ignore_eos=True)
    with LlamaCppEngine(
        small_model, n_ctx=2048, n_parallel=8, stream_cells=128, seed=0, flash_attn=True
    ) as eng:
        running, held = eng.submit_many(
            [
                Request("Once upon a time", p.with_(max_tokens=64)),
                Request("Hi", p.with_(max_tokens=500)),
            ]
        )
        eng.cancel(held)
        assert running.result()[0].tokens == 64
        assert held.cancelled()
        [[after]] = eng.generate_sync([Request("Hi", p.with_(max_tokens=4))])
        assert after.tokens == 4
        assert eng.stats()["relayouts"] == 0 and eng.stats()["held"] == 0
        # a prompt longer than even the shared cache holds is refused where it is: the
        # streams are not torn down for a request no layout can run
        with pytest.raises(ContextOverflowError, match="a sequence can hold at"):
            eng.generate_sync([Request("word " * 2100, p.with_(max_tokens=4))])
        assert eng.layout == "streams" and eng.stats()["relayouts"] == 0


def test_a_bad_layout_is_refused_before_the_model_loads():
    with pytest.raises(ValueError, match="layout must be one of auto, shared, streams"):
        LlamaCppEngine("/no/such/model.gguf", layout="paged")
    with pytest.raises(ValueError, match="needs >= 64: raise n_ctx or lower n_parallel"):
        LlamaCppEngine("/no/such/model.gguf", n_ctx=1024, n_parallel=32, layout="streams")


def _run(small_model: str, layout: str, reqs: list[Request]) -> list[list[tuple[str, int]]]:
    with LlamaCppEngine(
        small_model, n_ctx=16 * 512, n_parallel=16, seed=0, flash_attn=True, layout=layout
    ) as eng:
        assert eng.layout == layout
        if layout == "streams":
            assert eng.max_seq_len == 512
        first = eng.generate_sync(reqs)
        # the same continuation again: its prompt now comes from the cache (a fork)
        again = eng.generate_sync(reqs[:1])
    assert again[0][0].usage.prompt_tokens_cached > 0
    return [[(c.text, c.usage.prompt_tokens_computed) for c in r] for r in first + again]


def test_streams_compute_what_the_shared_cache_computes(small_model):
    """Exact mode: the layout changes neither an output nor what is computed."""
    reqs = [
        Request(chat("What is the capital of France?"), GREEDY.with_(max_tokens=24)),
        Request(chat("Name three colours."), GREEDY.with_(max_tokens=24)),
        Request(chat("Write a haiku about the sea."), SamplingParams(max_tokens=24, seed=5), n=4),
    ]
    streams = _run(small_model, "streams", reqs)
    shared = _run(small_model, "shared", reqs)
    assert streams == shared
    samples = streams[2]
    assert len({text for text, _ in samples}) > 1
    # the 4 samples' prompt was computed once and copied to the other 3 streams
    assert [computed for _, computed in samples][1:] == [0, 0, 0]


def test_a_sequence_stops_at_the_end_of_its_stream(small_model):
    """A stream holds ``n_ctx // n_parallel`` tokens: a sequence reaching its end finishes
    with "length" there; the others, shorter, are untouched."""
    p = GREEDY.with_(max_tokens=400, ignore_eos=True)
    with LlamaCppEngine(
        small_model, n_ctx=8 * 256, n_parallel=8, seed=0, flash_attn=True, layout="streams"
    ) as eng:
        assert eng.max_seq_len == 256
        long, short = eng.generate_sync(
            [Request("Once upon a time", p), Request("Counting: 1 2 3", p.with_(max_tokens=8))]
        )
    assert long[0].finish_reason == "length"
    assert long[0].prompt_tokens + long[0].tokens == 256
    assert short[0].tokens == 8 and short[0].finish_reason == "length"


def test_contexts_share_one_loaded_model(small_model):
    """Closing a context leaves the model it was made on loaded for the next one."""
    weights = NativeModel(models.resolve(small_model))
    try:
        prompt = weights.tokenize("The sea is")
        logits = []
        for streams in (False, True, False):
            ctx = NativeContext(weights, 1024, 4, 64, 2, flash_attn=True, streams=streams)
            try:
                assert ctx.n_ctx_seq == (256 if streams else 1024)
                ctx.batch_clear()
                for i, t in enumerate(prompt):
                    ctx.batch_add(t, i, 2, i == len(prompt) - 1)
                assert ctx.decode() == 0
                logits.append(ctx.logits(len(prompt) - 1).copy())
            finally:
                ctx.close()
        assert weights.model
        assert (logits[0] == logits[1]).all() and (logits[0] == logits[2]).all()
    finally:
        weights.close()


def _apply(ops, content):
    """Run StreamMap operations on a model of the streams: stream -> what it holds."""
    for op, a, b in ops:
        if op == "copy":
            content[b] = content[a]
        else:
            content[a] = None


@pytest.mark.parametrize(
    ("holding", "active"),
    [
        ({0, 1, 2, 3, 4, 5}, {0, 1, 5}),  # slot 5 swaps with cached slot 2
        ({0, 1, 5}, {0, 1, 5}),  # slot 5 moves into the empty stream 2
        ({0, 3, 4, 5, 6, 7}, {7, 3, 6}),
        ({0, 1, 2, 3, 4, 5, 6, 7}, {4, 5, 6}),  # already consecutive: nothing moves
        ({1, 6, 7}, {1, 6, 7}),
        ({2}, {2}),
        (set(range(8)), set(range(8))),
    ],
)
def test_the_batch_s_slots_are_gathered_onto_consecutive_streams(holding, active):
    """llama.cpp makes one micro-batch (one pass over the weights) only of consecutive
    stream ids: the slots in a step are moved onto consecutive streams, and every slot,
    moved or not, still finds its own cells."""
    from ponder.engines.llamacpp.streams import StreamMap

    m = StreamMap(8)
    content: dict[int, int | None] = {s: (s if s in holding else None) for s in range(9)}
    ops = m.gather(active, lambda s: content[s] is None)
    _apply(ops, content)
    streams = sorted(m.stream(a) for a in active)
    assert streams == list(range(streams[0], streams[0] + len(active)))
    for slot in holding:
        assert content[m.stream(slot)] == slot
    assert content[8] is None  # the spare is left empty
    again = m.gather(active, lambda s: content[s] is None)
    assert again == []


def test_slots_already_consecutive_do_not_move():
    from ponder.engines.llamacpp.streams import StreamMap

    m = StreamMap(8)
    assert m.gather({4, 5, 6}, lambda s: False) == []
    assert m.gather({3, 4, 5, 6}, lambda s: False) == []
    ops = m.gather({1, 5, 6}, lambda s: False)  # one swap: slot 1 into stream 4
    assert sum(op == "copy" for op, _, _ in ops) == 3
    assert sorted(m.stream(a) for a in (1, 5, 6)) == [4, 5, 6]
