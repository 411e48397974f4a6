"""The shape of ``Result.trace``, which the web page and the report draw.

Every trace is a JSON-able dict with a ``kind``:

* ``"samples"`` — independent samples: ``{"kind", "clusters": {answer: [indices]},
  "winner", ...}`` (voting and selection strategies add ``scores`` etc.);
* ``"tree"`` — step-level search: ``{"kind", "nodes": [...]}`` where each node is
  ``{"id", "parent", "depth", "text", "score", "finished", "selected", ...}`` and
  ``parent`` is ``None`` for children of the root (the question);
* ``"rounds"`` — iterative methods (refine, fusion, early stopping): ``{"kind",
  "rounds": [{...}, ...]}``.
"""

from __future__ import annotations

from typing import Any


class TreeTrace:
    """Builds a ``"tree"`` trace node by node."""

    def __init__(self, **extra: Any) -> None:
        self.nodes: list[dict[str, Any]] = []
        self.extra = extra

    def add(
        self,
        parent: int | None,
        text: str,
        score: float | None = None,
        finished: bool = False,
        **attrs: Any,
    ) -> int:
        depth = 0 if parent is None else self.nodes[parent]["depth"] + 1
        node = {
            "id": len(self.nodes),
            "parent": parent,
            "depth": depth,
            "text": text,
            "score": score,
            "finished": finished,
            "selected": False,
            **attrs,
        }
        self.nodes.append(node)
        return node["id"]

    def update(self, node: int, **attrs: Any) -> None:
        self.nodes[node].update(attrs)

    def select_path(self, leaf: int) -> None:
        """Mark ``leaf`` and its ancestors as the chosen path."""
        cur: int | None = leaf
        while cur is not None:
            self.nodes[cur]["selected"] = True
            cur = self.nodes[cur]["parent"]

    def as_dict(self) -> dict[str, Any]:
        return {"kind": "tree", "nodes": self.nodes, **self.extra}
