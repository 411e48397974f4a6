"""``ponder bench attention``: what one decoding step costs with llama.cpp's flash
attention on and off, for the KV-cache layouts ponder's workloads make.

ponder keeps every sequence in one unified KV cache, so that branches can share their
prefix's cells. What a decoding step's attention costs then depends on the layout of
that cache and on the kernel: with flash attention off, llama.cpp multiplies every
query against all cells in use (other sequences' cells are masked); with it on, its
kernel works through the cells in a different order and at a different cost per cell.
This benchmark times one step directly on ``NativeContext`` (no scheduler, no
sampling) for four layouts:

* ``one-problem``: 16 sequences share one 3,000-token prompt (``ponder solve``: the
  branches of one problem);
* ``8-problems``: 8 prompts of 375 tokens, 2 sequences forked from each;
* ``independent``: 16 prompts of 188 tokens, one sequence each (plain batching of
  unrelated requests);
* ``evaluation``: 8 prompts of 100 tokens, 8 samples forked from each, each 128 tokens
  into its own answer (an evaluation or a busy server, mid-sampling);
* ``64-short``: 64 prompts of 16 tokens, one sequence each: a step of 64 sequences with
  almost nothing to attend, the floor under ``evaluation``.

The numbers behind the engine's choice of attention mode (README, "Reproducibility and
speed"; ``native.one_problem_flash_attn``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ponder.benchmarks._common import decode_chunks, model_path, write_json

STEPS = 8


@dataclass(frozen=True)
class Layout:
    """``problems`` prompts of ``prompt`` tokens, ``per_problem`` sequences forked from
    each (sharing its cells), each with ``own`` further tokens of its own."""

    problems: int
    prompt: int
    per_problem: int
    own: int = 0

    @property
    def seqs(self) -> int:
        return self.problems * self.per_problem

    @property
    def cells(self) -> int:
        return self.problems * self.prompt + self.seqs * self.own


LAYOUTS = {
    "one-problem": Layout(1, 3000, 16),
    "8-problems": Layout(8, 375, 2),
    "independent": Layout(16, 188, 1),
    "evaluation": Layout(8, 100, 8, own=128),
    "64-short": Layout(64, 16, 1),
}


def time_layout(ctx: Any, source: list[int], layout: Layout, steps: int = STEPS) -> dict[str, Any]:
    """Build ``layout`` in an empty cache, then time ``steps`` decoding steps of one token
    per sequence (median seconds; one more step before them warms up)."""
    ctx.memory_clear()
    need = layout.prompt + layout.own
    if not source:
        raise ValueError("the attention benchmark needs some tokens to lay out")
    text = (source * (need // len(source) + 1))[:need]
    for p in range(layout.problems):
        first = p * layout.per_problem
        prompt = [(t, i, first) for i, t in enumerate(text[: layout.prompt])]
        decode_chunks(ctx, prompt, False, "attention")
        for s in range(first + 1, first + layout.per_problem):
            ctx.seq_copy(first, s, layout.prompt)
    if layout.own:
        own = text[layout.prompt :]
        tail = [(t, layout.prompt + i, s) for s in range(layout.seqs) for i, t in enumerate(own)]
        decode_chunks(ctx, tail, False, "attention")
    length = layout.prompt + layout.own
    token = text[-1]
    times = []
    for step in range(steps + 1):
        ctx.batch_clear()
        for s in range(layout.seqs):
            ctx.batch_add(token, length + step, s, True)
        t0 = time.perf_counter()
        if ctx.decode() != 0:
            raise RuntimeError("the KV cache is too small for the attention benchmark")
        if step:
            times.append(time.perf_counter() - t0)
    return {
        **asdict(layout),
        "sequences": layout.seqs,
        "cells_in_use": layout.cells + layout.seqs * (steps + 1),
        "seconds_per_step": statistics.median(times),
    }


def measure(
    model: Path, threads: int, modes: list[str], layouts: list[str] | None = None
) -> dict[str, Any]:
    from ponder.benchmarks.engine_bench import few_shot_prompt
    from ponder.engines.llamacpp.native import NativeContext

    n_threads = threads or max(1, os.cpu_count() or 1)
    out: dict[str, Any] = {"threads": n_threads, "modes": {}}
    for mode in modes:
        seqs = max(x.seqs for x in LAYOUTS.values())
        n_ctx = max(x.cells for x in LAYOUTS.values()) + seqs * (STEPS + 1) + 256
        ctx = NativeContext(
            model, n_ctx=n_ctx, n_seq_max=seqs, n_batch=512, n_threads=n_threads,
            flash_attn=mode == "on",
        )  # fmt: skip
        try:
            source = ctx.tokenize(few_shot_prompt(40), add_special=False)
            rows = {}
            for name in layouts or LAYOUTS:
                rows[name] = time_layout(ctx, source, LAYOUTS[name])
                print(
                    f"flash attention {mode:3} {name:12} "
                    f"{rows[name]['seconds_per_step'] * 1000:7.1f} ms/step",
                    file=sys.stderr,
                    flush=True,
                )
            out["modes"][mode] = rows
        finally:
            ctx.close()
    return out


def format_table(result: dict[str, Any]) -> str:
    modes = result["modes"]
    lines = [
        "| layout | sequences | KV cells in use | ms/step, flash on | ms/step, flash off "
        "| off / on |",
        "|---|---|---|---|---|---|",
    ]
    names = dict.fromkeys(name for rows in modes.values() for name in rows)
    for name in names:
        on = modes.get("on", {}).get(name)
        off = modes.get("off", {}).get(name)
        first = on or off
        shape = f"{first['problems']} × {first['prompt']:,}"
        if first["own"]:
            shape += f" + {first['sequences']} × {first['own']:,}"
        cells = f"{first['cells_in_use']:,} ({shape})"
        a = f"{on['seconds_per_step'] * 1000:.0f}" if on else "-"
        b = f"{off['seconds_per_step'] * 1000:.0f}" if off else "-"
        ratio = f"{off['seconds_per_step'] / on['seconds_per_step']:.2f}" if on and off else "-"
        lines.append(f"| {name} | {first['sequences']} | {cells} | {a} | {b} | {ratio} |")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    path = model_path(args)
    fa = getattr(args, "flash_attn", "auto")
    modes = ["on", "off"] if fa == "auto" else [fa]
    wanted = [x for x in getattr(args, "layouts", "").split(",") if x]
    unknown = [x for x in wanted if x not in LAYOUTS]
    if unknown:
        raise ValueError(f"unknown layouts {unknown}; known: {', '.join(LAYOUTS)}")
    result = measure(path, args.threads, modes, wanted or None)
    result["model"] = args.model
    print(format_table(result))
    write_json(result, args.out)
    return 0
