"""A radix tree over the token sequences whose KV state lives in the context.

Each KV sequence slot owns a path from the root: the tokens it has computed, at
positions 0..len-1. A node's ``slots`` are the slots whose path covers the node
entirely, so any of them holds the KV for every token from the root to the node's end.
Looking up a request's tokens returns the longest computed prefix and a slot to fork
it from. Paths always end on a node boundary, which keeps "covers the node" exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(eq=False)
class _Node:
    tokens: list[int]
    parent: _Node | None
    children: dict[int, _Node] = field(default_factory=dict)
    slots: set[int] = field(default_factory=set)


class RadixTree:
    def __init__(self) -> None:
        self._root = _Node(tokens=[], parent=None)
        self._end: dict[int, _Node] = {}
        self._length: dict[int, int] = {}

    def __contains__(self, slot: int) -> bool:
        return slot in self._end

    def length(self, slot: int) -> int:
        return self._length.get(slot, 0)

    def longest_match(self, tokens: Sequence[int]) -> tuple[int, int | None]:
        """``(n, slot)``: ``slot`` holds KV for ``tokens[:n]``, with ``n`` as large as possible."""
        node, depth, best = self._root, 0, None
        while depth < len(tokens):
            child = node.children.get(tokens[depth])
            if child is None:
                break
            m = common_prefix(child.tokens, tokens, depth)
            best = next(iter(child.slots))
            depth += m
            if m < len(child.tokens):
                return depth, best
            node = child
        return depth, best

    def insert(self, slot: int, tokens: Sequence[int]) -> None:
        """Record that ``slot`` holds KV for exactly ``tokens`` (replacing any old path)."""
        self.remove(slot)
        node, depth = self._root, 0
        while depth < len(tokens):
            child = node.children.get(tokens[depth])
            if child is None:
                leaf = _Node(tokens=list(tokens[depth:]), parent=node, slots={slot})
                node.children[tokens[depth]] = leaf
                node, depth = leaf, len(tokens)
                break
            m = common_prefix(child.tokens, tokens, depth)
            if m < len(child.tokens):
                self._split(child, m)
            child.slots.add(slot)
            node, depth = child, depth + m
        self._end[slot] = node
        self._length[slot] = len(tokens)

    def extend(self, slot: int, tokens: Sequence[int]) -> None:
        """Append ``tokens`` to ``slot``'s path (the slot has just computed them)."""
        if slot not in self._end:
            self._end[slot], self._length[slot] = self._root, 0
        for tok in tokens:
            end = self._end[slot]
            if end is not self._root and not end.children and end.slots == {slot}:
                end.tokens.append(tok)
            else:
                child = end.children.get(tok)
                if child is None:
                    child = _Node(tokens=[tok], parent=end, slots={slot})
                    end.children[tok] = child
                else:
                    if len(child.tokens) > 1:
                        self._split(child, 1)
                    child.slots.add(slot)
                self._end[slot] = child
            self._length[slot] += 1

    def remove(self, slot: int) -> None:
        node = self._end.pop(slot, None)
        self._length.pop(slot, None)
        while node is not None and node is not self._root:
            node.slots.discard(slot)
            parent = node.parent
            if not node.slots and parent is not None:
                del parent.children[node.tokens[0]]
            node = parent

    def _split(self, node: _Node, k: int) -> None:
        """Cut ``node`` after ``k`` tokens; the tail becomes its only child."""
        tail = _Node(tokens=node.tokens[k:], parent=node, children=node.children)
        tail.slots = set(node.slots)
        for c in tail.children.values():
            c.parent = tail
        node.tokens = node.tokens[:k]
        node.children = {tail.tokens[0]: tail}
        for s in node.slots:
            if self._end.get(s) is node:
                self._end[s] = tail

    def token_count(self) -> int:
        """Distinct (position, token-prefix) pairs held: KV cells if all sharing is by fork."""
        stack, n = [self._root], 0
        while stack:
            node = stack.pop()
            n += len(node.tokens)
            stack.extend(node.children.values())
        return n


def common_prefix(a: Sequence[int], b: Sequence[int], start: int = 0) -> int:
    """How many tokens ``a`` and ``b[start:]`` share from their beginnings."""
    n = min(len(a), len(b) - start)
    i = 0
    while i < n and a[i] == b[start + i]:
        i += 1
    return i
