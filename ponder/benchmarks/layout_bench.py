"""The KV layouts side by side (``python -m ponder.benchmarks.layout_bench``).

Two measurements, each running the layouts alternately in one process, so that a shared
or busy machine slows them alike (read the ratios):

* ``steps``: one decoding step (one token for each of 64 sequences; median of a few
  steps), timed on ``NativeContext`` directly, for the "evaluation" layout of
  ``ponder bench attention`` (8 prompts of 100 tokens, 8 sequences forked from each,
  each 128 tokens into its own answer) and its floor "64-short" (64 sequences of 16
  tokens), in the shared cache and in streams, flash attention on and off (a lighter
  pair, "32-independent", 32 unrelated sequences 128 tokens deep, and its floor
  "32-short", with ``--layouts``);
* ``throughput``: generated tokens/s of the whole engine (``LlamaCppEngine``) on three
  workloads: ``many`` (8 chat prompts × 8 samples, flash attention llama.cpp's choice,
  as evaluations run), ``n32`` (one prompt, 32 samples, as ``ponder bench engine``'s
  N=32) and ``search`` (16 branches over a ~1,000-token prompt, rounds of 32 tokens in
  which every branch continues a random branch's text, flash attention off as
  ``ponder solve``). The shared layout gets the library's default sizing (16,384
  cells, 64 slots), streams 64 slots of ``--stream-cells`` cells.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ponder import models
from ponder.benchmarks._common import decode_chunks, model_path, peak_rss_mib, resample, write_json
from ponder.benchmarks.engine_bench import few_shot_prompt
from ponder.engines.llamacpp.engine import LlamaCppEngine
from ponder.engines.llamacpp.native import NativeContext, NativeModel
from ponder.types import Request, SamplingParams

# name: (prompts, prompt tokens, sequences per prompt, own tokens per sequence)
STEP_LAYOUTS = {
    "evaluation": (8, 100, 8, 128),
    "64-short": (64, 16, 1, 0),
    "32-independent": (32, 16, 1, 112),
    "32-short": (32, 16, 1, 0),
}
STEPS = 4


def step_ms(weights: NativeModel, name: str, streams: bool, flash: bool, threads: int) -> float:
    """Median ms of one decoding step of ``STEP_LAYOUTS[name]`` in a fresh context."""
    problems, prompt, per, own = STEP_LAYOUTS[name]
    seqs, length = problems * per, prompt + own
    n_ctx = seqs * (-(-(length + STEPS + 2) // 256) * 256)
    ctx = NativeContext(weights, n_ctx, seqs, 512, threads, flash, streams=streams)
    try:
        text = [(17 + 7 * i) % 5000 + 100 for i in range(length)]
        for p in range(problems):
            first = p * per
            head = [(t, i, first) for i, t in enumerate(text[:prompt])]
            decode_chunks(ctx, head, False, "layout")
            for s in range(first + 1, first + per):
                ctx.seq_copy(first, s, prompt)
        tail = [(t, prompt + i, s) for s in range(seqs) for i, t in enumerate(text[prompt:])]
        if tail:
            decode_chunks(ctx, tail, False, "layout")
        times = []
        for k in range(STEPS + 1):
            t0 = time.perf_counter()
            decode_chunks(ctx, [(text[-1], length + k, s) for s in range(seqs)], True, "layout")
            if k:
                times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1000
    finally:
        ctx.close()


def _many(eng: LlamaCppEngine, p: SamplingParams) -> int:
    qs = [f"What is {17 * i + 3} times {i + 11}? Think step by step." for i in range(8)]
    out = eng.generate_sync([Request(({"role": "user", "content": q},), p, n=8) for q in qs])
    return sum(c.tokens for r in out for c in r)


def _n32(eng: LlamaCppEngine, p: SamplingParams) -> int:
    [out] = eng.generate_sync([Request("Chapter 1. Introduction\n\n", p, n=32)])
    return sum(c.tokens for c in out)


def _search(eng: LlamaCppEngine, p: SamplingParams) -> int:
    prompt, q = few_shot_prompt(), p.with_(max_tokens=32)
    eng.generate_sync([Request(prompt, q.with_(max_tokens=4))])
    rng = np.random.default_rng(0)
    texts, made = [prompt] * 16, 0
    for r in range(4):
        pre = resample(texts, rng)
        out = eng.generate_sync([Request(x, q.with_(seed=100 * r + i)) for i, x in enumerate(pre)])
        texts = [x + o[0].text for x, o in zip(pre, out, strict=True)]
        made += sum(o[0].tokens for o in out)
    return made


WORKLOADS: dict[str, tuple[Callable[[LlamaCppEngine, SamplingParams], int], bool | None]] = {
    "many": (_many, None),
    "n32": (_n32, None),
    "search": (_search, False),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=models.DEFAULT_MODEL)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="alternations of the layouts")
    ap.add_argument("--tokens", type=int, default=64, help="tokens per sample (throughput)")
    ap.add_argument("--stream-cells", type=int, default=1536, help="cells per stream")
    ap.add_argument("--skip", default="", help="comma list of: steps,many,n32,search")
    ap.add_argument("--flash", default="on,off", help="steps: flash attention on, off or both")
    ap.add_argument(
        "--layouts", default="evaluation,64-short", help=f"steps: of {', '.join(STEP_LAYOUTS)}"
    )
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    skip = set(args.skip.split(","))
    path = model_path(args)
    result: dict[str, Any] = {"model": args.model, "steps": {}, "throughput": {}}
    if "steps" not in skip:
        weights = NativeModel(path)
        try:
            for rnd in range(args.rounds):
                for name in args.layouts.split(","):
                    for flash in [f == "on" for f in args.flash.split(",")]:
                        for layout in ("shared", "streams")[:: 1 if rnd % 2 == 0 else -1]:
                            ms = step_ms(weights, name, layout == "streams", flash, args.threads)
                            key = f"{name} {layout} flash {'on' if flash else 'off'}"
                            result["steps"].setdefault(key, []).append(ms)
                            print(f"{key:36} {ms:8.1f} ms/step", file=sys.stderr, flush=True)
        finally:
            weights.close()
    sizes = {
        "shared": {"n_ctx": 16384, "n_parallel": 64},
        "streams": {"n_ctx": 64 * args.stream_cells, "n_parallel": 64},
    }
    p = SamplingParams(temperature=0.8, max_tokens=args.tokens, ignore_eos=True, seed=1)
    for rnd in range(args.rounds):
        for name, (work, attn) in WORKLOADS.items():
            if name in skip:
                continue
            for layout in ("shared", "streams")[:: 1 if rnd % 2 == 0 else -1]:
                with LlamaCppEngine(
                    str(path), n_threads=args.threads, flash_attn=attn, layout=layout,
                    **sizes[layout],
                ) as eng:  # fmt: skip
                    eng.generate_sync([Request("Hello", p.with_(max_tokens=2))])
                    t0 = time.perf_counter()
                    made = work(eng, p)
                    dt = time.perf_counter() - t0
                key = f"{name} {layout}"
                result["throughput"].setdefault(key, []).append(made / dt)
                print(f"{key:36} {made / dt:8.1f} tok/s", file=sys.stderr, flush=True)
    result["peak_rss_mib"] = peak_rss_mib()
    for section in ("steps", "throughput"):
        for key, values in result[section].items():
            print(f"{section:10} {key:36} median {statistics.median(values):8.1f}  {values}")
    write_json(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
