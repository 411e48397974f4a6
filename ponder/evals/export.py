"""Results as compact, committable text: gzip-compressed JSON lines, and back.

One file holds runs, their pools (with every sample) and their cells, one JSON object per
line with a ``kind`` (``"run"``, ``"pool"``, ``"cell"``), in a stable order, compressed
with a fixed timestamp so that the same data gives the same bytes. A cell's result keeps
everything but its ``trace`` (the search tree or rounds, which only the web page draws).
Importing a file into a store inserts what the store lacks; a run split into parts
resumes from it: import, then start the same run again, and only the missing pools and
cells are drawn.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ponder.evals.store import CellRecord, PoolRecord, SampleRecord, Store


def records(store: Store, run_ids: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
    """The store's runs (all, or ``run_ids``), each followed by its pools and cells."""
    for run in store.runs():
        if run_ids is not None and run["run_id"] not in run_ids:
            continue
        yield {"kind": "run", **run}
        for pool in store.pools(run["run_id"]):
            row = asdict(pool)
            row["samples"] = [asdict(s) for s in pool.samples]
            yield {"kind": "pool", **row}
        cells = store.cells(run["run_id"], with_result=True)
        for cell in sorted(cells, key=lambda c: (c.strategy, c.budget, c.seed, c.problem_id)):
            row = asdict(cell)
            row["result"] = {k: v for k, v in cell.result.items() if k != "trace"}
            yield {"kind": "cell", **row}


def export_results(
    store: Store, path: str | Path, run_ids: Sequence[str] | None = None
) -> dict[str, int]:
    """Write the runs (all, or ``run_ids``) to ``path`` (``.jsonl.gz``); counts by kind."""
    counts: dict[str, int] = {"run": 0, "pool": 0, "cell": 0}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=9) as gz:
        for row in records(store, run_ids):
            counts[row["kind"]] += 1
            gz.write((json.dumps(row, sort_keys=True, default=str) + "\n").encode())
    path.write_bytes(buffer.getvalue())
    return counts


def read_results(path: str | Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of an exported file (gzip-compressed or plain JSON lines)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no results file {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path} line {number}: not JSON ({exc})") from None
            if row.get("kind") not in ("run", "pool", "cell"):
                raise ValueError(f"{path} line {number}: unknown kind {row.get('kind')!r}")
            yield row


def import_results(paths: Iterable[str | Path], store: Store) -> dict[str, int]:
    """Insert the runs, pools and cells of exported files that ``store`` lacks (what it
    has is kept); counts of what was read, by kind."""
    counts: dict[str, int] = {"run": 0, "pool": 0, "cell": 0}
    for path in paths:
        for row in read_results(path):
            kind = row.pop("kind")
            counts[kind] += 1
            if kind == "run":
                store.add_run(row)
            elif kind == "pool":
                key = (row["problem_id"], int(row["seed"]))
                if key not in store.finished_pools(row["run_id"]):
                    samples = tuple(SampleRecord(**s) for s in row.pop("samples"))
                    store.add_pool(PoolRecord(**{**row, "samples": samples}))
            else:
                cell = CellRecord(
                    **{
                        **row,
                        "candidate_answers": tuple(row["candidate_answers"]),
                        "candidates_correct": tuple(row["candidates_correct"]),
                    }
                )
                if cell.key not in store.finished(cell.run_id):
                    store.add_cell(cell)
    return counts


def load_results(paths: Iterable[str | Path]) -> Store:
    """A new in-memory store holding the exported files' data."""
    store = Store(":memory:")
    import_results(paths, store)
    return store
