"""Which KV stream holds which sequence slot, kept so that one step is one micro-batch.

With one KV stream per sequence (``kv_unified=false``) llama.cpp splits a batch into
micro-batches (ubatches) whose sequence ids run consecutively (s, s+1, s+2, ...; its
``split_equal`` with ``sequential``), and each micro-batch is one pass over the weights.
Decoding slots 0, 1 and 5 would be two passes. The scheduler's slots are therefore
logical: ``StreamMap`` maps them to llama.cpp's streams and, before each decode, moves
the sequences in the batch onto k consecutive streams (k = how many there are; the
window that needs the fewest moves), by copying streams through one spare stream. A
move copies whole stream buffers, far cheaper than a second pass over the weights.
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
        """Move the ``active`` slots onto ``k = len(active)`` consecutive streams (the
        window that already holds the most of them); return the stream operations that
        do it, in order. ``is_empty(stream)``: whether a stream holds no cells (then
        its slot is moved by one copy instead of a swap through the spare)."""
        want = set(active)
        k = len(want)
        if k == 0:
            return []
        inside = [self._slot[s] in want for s in range(self.n)]
        # the window of k streams that already holds the most of them
        held = best = sum(inside[:k])
        start = 0
        for w in range(1, self.n - k + 1):
            held += inside[w + k - 1] - inside[w - 1]
            if held > best:
                best, start = held, w
        end = start + k
        holes = [s for s in range(start, end) if not inside[s]]
        movers = sorted(a for a in want if not start <= self._stream[a] < end)
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
