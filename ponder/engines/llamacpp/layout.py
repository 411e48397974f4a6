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
"""

from __future__ import annotations

import os

LAYOUTS = ("shared", "streams")

# The auto layout gives each slot its own stream when a stream can hold this many
# tokens: a few-shot prompt plus a long answer. Below it, sequences would be cut short
# where the shared cache lets them grow, so the shared layout is kept.
STREAM_MIN_CELLS = 2048


def choose_layout(layout: str | None, n_ctx: int, n_parallel: int) -> tuple[str, int]:
    """The layout to run and its cells in all: ``layout`` when given (ValueError if
    unknown or if its streams would be too short); else ``PONDER_KV_LAYOUT`` when set
    (``shared``, ``streams``, or ``streams:CELLS`` for ``n_parallel`` streams of CELLS
    cells each, whatever ``n_ctx`` says: for measuring a workload in streams without
    changing its code); else ``streams`` when every slot's stream holds at least
    ``STREAM_MIN_CELLS`` cells, else ``shared``."""
    if layout is None:
        forced = os.environ.get("PONDER_KV_LAYOUT", "").strip()
        if not forced:
            auto = "streams" if n_ctx // n_parallel >= STREAM_MIN_CELLS else "shared"
            return auto, n_ctx
        layout, _, cells = forced.partition(":")
        if cells:
            if layout != "streams" or not cells.isdigit():
                raise ValueError(
                    f"PONDER_KV_LAYOUT must be shared, streams or streams:CELLS, got {forced!r}"
                )
            n_ctx = n_parallel * int(cells)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)} or None, got {layout!r}")
    if layout == "streams" and n_ctx // n_parallel < 64:
        raise ValueError(
            f"the streams layout gives each of the n_parallel={n_parallel} slots "
            f"n_ctx // n_parallel = {n_ctx // n_parallel} cells; it needs >= 64: raise n_ctx "
            "or lower n_parallel"
        )
    return layout, n_ctx
