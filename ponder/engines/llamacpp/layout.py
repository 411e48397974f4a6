"""How the embedded engine lays out its KV cells: which layout, chosen from what.

``shared``: one unified KV cache for every sequence. A fork shares its parent's cells
(``llama_memory_seq_cp`` copies no data) and any sequence may grow to the whole cache,
but each query's attention runs over the used range of all sequences' cells: with
flash attention off it multiplies them all (masked), with it on it walks them all,
skipping the masked ones. A step's attention therefore grows with (live sequences) ×
(cells in use), which docs/BENCHMARKS.md section 4 measures.

``streams``: one KV stream per sequence slot (llama.cpp's ``kv_unified=false``), each
of ``n_ctx // n_parallel`` cells. A query attends only its own stream, so a step's
attention grows with (live sequences) × (the longest sequence), as in llama-server,
while all sequences still decode in one ``llama_decode`` (one pass over the weights).
A fork copies its parent's stream (the whole stream buffer: ``n_ctx // n_parallel``
cells × the model's bytes per cell, e.g. 12 KiB a cell on qwen2.5-0.5b, on the next
decode) instead of sharing it, and no sequence may outgrow its stream.

``auto`` (the default): both, one at a time. The engine runs in streams, sized to a KV
memory budget (``stream_sizing``), while every request it admits fits a stream (prompt
plus ``max_tokens``); a request that does not waits until the streams drain, then the
engine re-creates its context as the shared cache (the weights stay loaded) and runs it
there, and goes back to streams, once idle, for requests that fit again. The streams come
in up to two sizes (``stream_rungs``): short ones, twice as many in the same budget, while
the requests fit them, and the full-length ones from the first request that does not. A
change of layout empties the prefix cache; in exact mode it changes no output.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

LAYOUTS = ("shared", "streams")

# auto: each stream holds this many cells (a ~1,000-token prompt and a 512-token answer),
STREAM_CELLS = 1536
# and the streams' KV takes at most this much memory (with the default model's weights
# and buffers, peak RSS stays under 1.5 GiB),
KV_BUDGET_MB = 768
# and streams are used only when the budget holds at least this many (or n_parallel, if
# fewer): a search's branches (16 running, forked from their 16 cached parents) need twice
# their number of slots, or they evict the prefixes they are about to fork.
MIN_STREAM_SLOTS = 32
# auto starts in streams of half the cells (twice the slots in the same budget) when that
# gives more slots and each short stream still holds this many cells: a search over short
# prompts keeps more of its branches' prefixes between rounds, and a fork copies half the
# bytes. llama.cpp rounds a stream up to a multiple of 256 cells.
MIN_SHORT_STREAM_CELLS = 512


@dataclass(frozen=True)
class Plan:
    """The layout an engine runs. ``mode``: ``shared``, ``streams`` (fixed) or ``auto``.
    ``n_ctx`` and ``n_parallel``: the shared cache's cells and slots (in ``streams`` mode,
    the streams' cells in all and their count). ``rungs``: the stream sizes of ``auto``,
    ``(slots, cells)``, shortest first (empty in the fixed modes); ``stream_slots`` and
    ``stream_cells`` are the last, full-length one (0 in the fixed modes)."""

    mode: str
    n_ctx: int
    n_parallel: int
    rungs: tuple[tuple[int, int], ...] = ()

    @property
    def stream_slots(self) -> int:
        return self.rungs[-1][0] if self.rungs else 0

    @property
    def stream_cells(self) -> int:
        return self.rungs[-1][1] if self.rungs else 0


def kv_bytes_per_cell(n_layer: int, n_head_kv: int, n_embd: int, n_head: int) -> int:
    """KV bytes one cell takes: a key and a value of ``n_head_kv`` heads of
    ``n_embd // n_head`` f16 values in every layer (the engine's cache type)."""
    return 2 * n_layer * n_head_kv * (n_embd // max(n_head, 1)) * 2


def stream_sizing(
    n_ctx: int,
    n_parallel: int,
    bytes_per_cell: int,
    budget_mb: float = KV_BUDGET_MB,
    stream_cells: int = STREAM_CELLS,
) -> tuple[int, int] | None:
    """``auto``'s streams, ``(slots, cells)``: up to ``n_parallel`` streams of
    ``min(stream_cells, n_ctx)`` cells, as many as fit ``budget_mb`` with the spare stream;
    None when fewer than ``min(MIN_STREAM_SLOTS, n_parallel)`` fit (then ``auto`` keeps
    the shared cache)."""
    cells = min(stream_cells, n_ctx)
    fit = int(budget_mb * 2**20) // (cells * max(bytes_per_cell, 1)) - 1
    slots = min(n_parallel, fit)
    return (slots, cells) if slots >= min(MIN_STREAM_SLOTS, n_parallel) else None


def stream_rungs(
    n_ctx: int,
    n_parallel: int,
    bytes_per_cell: int,
    budget_mb: float = KV_BUDGET_MB,
    stream_cells: int = STREAM_CELLS,
) -> tuple[tuple[int, int], ...]:
    """``auto``'s stream sizes, shortest first: ``stream_sizing``'s streams, preceded by
    streams of half as many cells when those give more slots in the same budget and hold
    at least ``MIN_SHORT_STREAM_CELLS`` cells (a multiple of 256, as llama.cpp sizes a
    stream); empty when the full-length streams are too few (then ``auto`` keeps the
    shared cache, as before the short streams existed)."""
    full = stream_sizing(n_ctx, n_parallel, bytes_per_cell, budget_mb, stream_cells)
    if full is None:
        return ()
    half = full[1] // 2
    if half >= MIN_SHORT_STREAM_CELLS and half % 256 == 0:
        short = stream_sizing(n_ctx, n_parallel, bytes_per_cell, budget_mb, half)
        if short is not None and short[0] > full[0]:
            return (short, full)
    return (full,)


def choose_layout(layout: str | None, n_ctx: int, n_parallel: int) -> tuple[str, int]:
    """The layout mode to run and its cells in all: ``layout`` when given (ValueError if
    unknown or if its streams would be too short); else ``PONDER_KV_LAYOUT`` when set
    (``shared``, ``streams``, ``auto``, or ``streams:CELLS`` for ``n_parallel`` streams of
    CELLS cells each, whatever ``n_ctx`` says: for measuring a workload in one layout
    without changing its code); else ``auto``."""
    if layout is None:
        forced = os.environ.get("PONDER_KV_LAYOUT", "").strip()
        if not forced:
            return "auto", n_ctx
        layout, _, cells = forced.partition(":")
        if cells:
            if layout != "streams" or not cells.isdigit():
                raise ValueError(
                    "PONDER_KV_LAYOUT must be auto, shared, streams or streams:CELLS, got "
                    f"{forced!r}"
                )
            n_ctx = n_parallel * int(cells)
    if layout not in (*LAYOUTS, "auto"):
        raise ValueError(
            f"layout must be one of auto, {', '.join(LAYOUTS)} or None, got {layout!r}"
        )
    if layout == "streams" and n_ctx // n_parallel < 64:
        raise ValueError(
            f"the streams layout gives each of the n_parallel={n_parallel} slots "
            f"n_ctx // n_parallel = {n_ctx // n_parallel} cells; it needs >= 64: raise n_ctx "
            "or lower n_parallel"
        )
    return layout, n_ctx


def plan_layout(
    mode: str,
    n_ctx: int,
    n_parallel: int,
    bytes_per_cell: int,
    budget_mb: float = KV_BUDGET_MB,
    stream_cells: int = STREAM_CELLS,
) -> Plan:
    """The ``Plan`` for a mode from ``choose_layout``: ``auto`` gets its streams from
    ``stream_rungs``, or becomes ``shared`` when the budget holds too few."""
    if mode != "auto":
        return Plan(mode, n_ctx, n_parallel)
    rungs = stream_rungs(n_ctx, n_parallel, bytes_per_cell, budget_mb, stream_cells)
    if not rungs:
        return Plan("shared", n_ctx, n_parallel)
    return Plan("auto", n_ctx, n_parallel, rungs)
