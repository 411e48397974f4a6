"""Which KV stream holds which sequence slot, kept so that one step is one micro-batch.

With one KV stream per sequence (``kv_unified=false``) llama.cpp splits a batch into
micro-batches (ubatches) whose sequence ids run consecutively (s, s+1, s+2, ...; its
``split_equal`` with ``sequential``), and each micro-batch is one pass over the weights.
Decoding slots 0, 1 and 5 would be two passes. The scheduler's slots are therefore
logical: ``StreamMap`` maps them to llama.cpp's streams and, before each decode, moves
the sequences in the batch onto the streams ``0..k-1`` (k = how many there are), by
copying streams through one spare stream. A move copies whole stream buffers, far
cheaper than a second pass over the weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

# ("copy", src, dst): copy stream src over stream dst; ("clear", s, -1): empty stream s.
Op = tuple[str, int, int]


class StreamMap:
    """``n`` logical slots over ``n + 1`` streams (stream ``n`` is the spare)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.reset()

    def reset(self) -> None:
        self._stream = list(range(self.n))
        self._slot = [*range(self.n), -1]

    def stream(self, slot: int) -> int:
        return self._stream[slot]

    def gather(self, active: Iterable[int], is_empty: Callable[[int], bool]) -> list[Op]:
        """Move the ``active`` slots onto streams ``0..k-1``; return the stream operations
        that do it, in order. ``is_empty(stream)``: whether a stream holds no cells (then
        its slot is moved by one copy instead of a swap through the spare)."""
        want = set(active)
        k = len(want)
        holes = [s for s in range(k) if self._slot[s] not in want]
        movers = sorted(a for a in want if self._stream[a] >= k)
        ops: list[Op] = []
        spare = self.n
        for a, hole in zip(movers, holes, strict=True):
            b = self._slot[hole]
            src = self._stream[a]
            if is_empty(hole):
                ops += [("copy", src, hole), ("clear", src, -1)]
            else:
                ops += [("copy", src, spare), ("copy", hole, src), ("copy", spare, hole)]
                ops.append(("clear", spare, -1))
            self._stream[a], self._stream[b] = hole, src
            self._slot[hole], self._slot[src] = a, b
        return ops
