"""The results store: one SQLite file, WAL mode, one row per finished cell.

Every finished cell is committed at once, so a killed run loses at most the cells that were
in flight; started again with the same configuration it gets the same run id and skips the
cells already in the file. Schema (see docs/EVALS.md):

* ``runs``: one row per configuration (``run_id`` is a hash of it): task and its options,
  model name and SHA-256, strategy configs, scorer, ponder version; plus the grid last asked
  for (budgets, seeds, limit).
* ``cells``: one row per (run, problem, strategy, budget, seed): the answer, whether it is
  correct, usage, seconds, every candidate's answer and correctness, the full result JSON.
* ``errors``: cells (or pools) that failed (retried by the next run; not in ``cells``).
* ``pools``: one row per (run, problem, seed) of a pool run: the pool's size, its usage
  (one engine request for all samples; the scorers' usage per scorer), seconds.
* ``samples``: one row per sample of a pool: text, extracted answer, tokens, finish reason,
  hidden-grader correctness, the per-token statistics the selection rules use, and each
  scorer's score. A pool and its samples are committed together.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    model TEXT NOT NULL,
    config TEXT NOT NULL,
    grid TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS cells (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    problem_id TEXT NOT NULL,
    strategy TEXT NOT NULL,
    budget INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    answer TEXT,
    reference TEXT,
    correct INTEGER NOT NULL,
    tokens_generated INTEGER NOT NULL,
    prompt_tokens_computed INTEGER NOT NULL,
    prompt_tokens_cached INTEGER NOT NULL,
    engine_calls INTEGER NOT NULL,
    scorer_calls INTEGER NOT NULL,
    seconds REAL NOT NULL,
    n_candidates INTEGER NOT NULL,
    candidate_answers TEXT NOT NULL,
    candidates_correct TEXT NOT NULL,
    result TEXT NOT NULL,
    finished REAL NOT NULL,
    PRIMARY KEY (run_id, problem_id, strategy, budget, seed)
);
CREATE TABLE IF NOT EXISTS pools (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    problem_id TEXT NOT NULL,
    seed INTEGER NOT NULL,
    n INTEGER NOT NULL,
    reference TEXT,
    usage TEXT NOT NULL,
    scorer_usage TEXT NOT NULL,
    seconds REAL NOT NULL,
    finished REAL NOT NULL,
    PRIMARY KEY (run_id, problem_id, seed)
);
CREATE TABLE IF NOT EXISTS samples (
    run_id TEXT NOT NULL,
    problem_id TEXT NOT NULL,
    seed INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    text TEXT NOT NULL,
    answer TEXT,
    tokens INTEGER NOT NULL,
    finish_reason TEXT NOT NULL,
    correct INTEGER NOT NULL,
    stats TEXT NOT NULL,
    scores TEXT NOT NULL,
    PRIMARY KEY (run_id, problem_id, seed, idx)
);
CREATE TABLE IF NOT EXISTS errors (
    run_id TEXT NOT NULL,
    problem_id TEXT NOT NULL,
    strategy TEXT NOT NULL,
    budget INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    error TEXT NOT NULL,
    at REAL NOT NULL
);
"""

CellKey = tuple[str, str, int, int]
"""(problem_id, strategy label, budget, seed) within one run."""


@dataclass(frozen=True)
class CellRecord:
    """One finished cell, as written to (and read from) the ``cells`` table."""

    run_id: str
    problem_id: str
    strategy: str
    budget: int
    seed: int
    answer: str | None
    reference: str | None
    correct: bool
    tokens_generated: int
    prompt_tokens_computed: int
    prompt_tokens_cached: int
    engine_calls: int
    scorer_calls: int
    seconds: float
    candidate_answers: tuple[str | None, ...]
    candidates_correct: tuple[bool, ...]
    result: dict[str, Any]
    finished: float = 0.0

    @property
    def key(self) -> CellKey:
        return (self.problem_id, self.strategy, self.budget, self.seed)


@dataclass(frozen=True)
class SampleRecord:
    """One sample of a pool. ``stats``: per-token statistics (``mean_logprob``,
    ``log_weight_mean``, ``log_weight_sum``, ``confidence`` by kind); ``scores``: scorer name
    -> score; ``correct``: the hidden grader's verdict (metrics only, never selection)."""

    text: str
    answer: str | None
    tokens: int
    finish_reason: str
    correct: bool
    stats: dict[str, Any]
    scores: dict[str, float]


@dataclass(frozen=True)
class PoolRecord:
    """The ``n`` samples of one problem and seed, drawn in one engine request.

    ``usage``: the request's usage (``Usage.as_dict`` fields); ``scorer_usage``: scorer
    name -> the usage of scoring all ``n`` samples."""

    run_id: str
    problem_id: str
    seed: int
    reference: str | None
    samples: tuple[SampleRecord, ...]
    usage: dict[str, float]
    scorer_usage: dict[str, dict[str, float]]
    seconds: float
    finished: float = 0.0

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def key(self) -> tuple[str, int]:
        return (self.problem_id, self.seed)


def run_id_for(config: dict[str, Any]) -> str:
    """A run's id: the first 16 hex digits of the SHA-256 of its canonical JSON config."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Store:
    """A results database. Safe to read (e.g. by ``ponder report``) while a run writes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise ValueError(f"{self.path} is a folder; give a database file, e.g. runs.sqlite")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise ValueError(
                    f"{self.path} has results schema version {version}; this ponder reads "
                    f"version {SCHEMA_VERSION}"
                )
            self.db.executescript(SCHEMA)
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self.db.commit()
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"{self.path} is not a ponder results database ({exc})") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def begin_run(self, config: dict[str, Any], grid: dict[str, Any]) -> str:
        """Record a run's configuration (once) and the grid asked for now; return its id."""
        run_id = run_id_for(config)
        now = time.time()
        model = config.get("model", {})
        model_name = model.get("name", "") if isinstance(model, dict) else str(model)
        with self.db:
            self.db.execute(
                "INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    str(config.get("task", "")),
                    model_name,
                    json.dumps(config, sort_keys=True, default=str),
                    json.dumps(grid),
                    now,
                    now,
                ),
            )
            self.db.execute(
                "UPDATE runs SET grid = ?, updated = ? WHERE run_id = ?",
                (json.dumps(grid), now, run_id),
            )
        return run_id

    def finished(self, run_id: str) -> set[CellKey]:
        rows = self.db.execute(
            "SELECT problem_id, strategy, budget, seed FROM cells WHERE run_id = ?", (run_id,)
        )
        return {(p, s, int(b), int(sd)) for p, s, b, sd in rows}

    def add_cell(self, cell: CellRecord) -> None:
        """Write one finished cell and commit it at once."""
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO cells VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    cell.run_id,
                    cell.problem_id,
                    cell.strategy,
                    cell.budget,
                    cell.seed,
                    cell.answer,
                    cell.reference,
                    int(cell.correct),
                    cell.tokens_generated,
                    cell.prompt_tokens_computed,
                    cell.prompt_tokens_cached,
                    cell.engine_calls,
                    cell.scorer_calls,
                    cell.seconds,
                    len(cell.candidates_correct),
                    json.dumps(list(cell.candidate_answers)),
                    json.dumps([int(x) for x in cell.candidates_correct]),
                    json.dumps(cell.result, default=str),
                    cell.finished or time.time(),
                ),
            )

    def add_error(self, run_id: str, key: CellKey, error: str) -> None:
        with self.db:
            self.db.execute(
                "INSERT INTO errors VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, *key, error, time.time()),
            )

    def runs(self) -> list[dict[str, Any]]:
        """Every run: id, task, model, config, grid, created, updated (oldest first)."""
        out = []
        for row in self.db.execute(
            "SELECT run_id, task, model, config, grid, created, updated FROM runs "
            "ORDER BY created"
        ):
            out.append(
                {
                    "run_id": row[0],
                    "task": row[1],
                    "model": row[2],
                    "config": json.loads(row[3]),
                    "grid": json.loads(row[4]),
                    "created": row[5],
                    "updated": row[6],
                }
            )
        return out

    def cells(self, run_id: str | None = None, with_result: bool = False) -> list[CellRecord]:
        """The finished cells of one run (or all), in the order they finished."""
        query = "SELECT * FROM cells" + (" WHERE run_id = ?" if run_id else "")
        query += " ORDER BY finished"
        rows: Iterable[Any] = self.db.execute(query, (run_id,) if run_id else ())
        out = []
        for r in rows:
            out.append(
                CellRecord(
                    run_id=r[0],
                    problem_id=r[1],
                    strategy=r[2],
                    budget=int(r[3]),
                    seed=int(r[4]),
                    answer=r[5],
                    reference=r[6],
                    correct=bool(r[7]),
                    tokens_generated=int(r[8]),
                    prompt_tokens_computed=int(r[9]),
                    prompt_tokens_cached=int(r[10]),
                    engine_calls=int(r[11]),
                    scorer_calls=int(r[12]),
                    seconds=float(r[13]),
                    candidate_answers=tuple(json.loads(r[15])),
                    candidates_correct=tuple(bool(x) for x in json.loads(r[16])),
                    result=json.loads(r[17]) if with_result else {},
                    finished=float(r[18]),
                )
            )
        return out

    def add_run(self, run: dict[str, Any]) -> None:
        """Insert a run row as ``runs()`` returns it (kept as is when the id is known)."""
        model = run.get("model", "")
        with self.db:
            self.db.execute(
                "INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    run["run_id"],
                    str(run.get("task", "")),
                    model if isinstance(model, str) else json.dumps(model),
                    json.dumps(run["config"], sort_keys=True, default=str),
                    json.dumps(run.get("grid", {})),
                    float(run.get("created", time.time())),
                    float(run.get("updated", time.time())),
                ),
            )

    def add_pool(self, pool: PoolRecord) -> None:
        """Write one pool and all its samples in one transaction."""
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO pools VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    pool.run_id,
                    pool.problem_id,
                    pool.seed,
                    pool.n,
                    pool.reference,
                    json.dumps(pool.usage),
                    json.dumps(pool.scorer_usage),
                    pool.seconds,
                    pool.finished or time.time(),
                ),
            )
            self.db.execute(
                "DELETE FROM samples WHERE run_id = ? AND problem_id = ? AND seed = ?",
                (pool.run_id, pool.problem_id, pool.seed),
            )
            self.db.executemany(
                "INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        pool.run_id,
                        pool.problem_id,
                        pool.seed,
                        i,
                        s.text,
                        s.answer,
                        s.tokens,
                        s.finish_reason,
                        int(s.correct),
                        json.dumps(s.stats),
                        json.dumps(s.scores),
                    )
                    for i, s in enumerate(pool.samples)
                ],
            )

    def add_sample_stats(
        self, run_id: str, problem_id: str, seed: int, stats: dict[int, dict[str, Any]]
    ) -> None:
        """Merge ``stats[idx]`` into the stored ``stats`` of sample ``idx`` of one pool (e.g.
        a signal computed after the pool was drawn), in one transaction."""
        key = (run_id, problem_id, seed)
        where = "run_id = ? AND problem_id = ? AND seed = ? AND idx = ?"
        with self.db:
            for idx, extra in stats.items():
                row = self.db.execute(f"SELECT stats FROM samples WHERE {where}", (*key, idx))
                found = row.fetchone()
                if found is None:
                    raise ValueError(f"no sample {idx} of pool {key} in the store")
                merged = {**json.loads(found[0]), **extra}
                self.db.execute(
                    f"UPDATE samples SET stats = ? WHERE {where}", (json.dumps(merged), *key, idx)
                )

    def finished_pools(self, run_id: str) -> set[tuple[str, int]]:
        rows = self.db.execute("SELECT problem_id, seed FROM pools WHERE run_id = ?", (run_id,))
        return {(p, int(sd)) for p, sd in rows}

    def pools(self, run_id: str) -> list[PoolRecord]:
        """The pools of one run with their samples, ordered by problem and seed."""
        samples: dict[tuple[str, int], list[SampleRecord]] = {}
        for r in self.db.execute(
            "SELECT problem_id, seed, text, answer, tokens, finish_reason, correct, stats, "
            "scores FROM samples WHERE run_id = ? ORDER BY problem_id, seed, idx",
            (run_id,),
        ):
            samples.setdefault((r[0], int(r[1])), []).append(
                SampleRecord(
                    text=r[2],
                    answer=r[3],
                    tokens=int(r[4]),
                    finish_reason=r[5],
                    correct=bool(r[6]),
                    stats=json.loads(r[7]),
                    scores=json.loads(r[8]),
                )
            )
        out = []
        for r in self.db.execute(
            "SELECT problem_id, seed, reference, usage, scorer_usage, seconds, finished "
            "FROM pools WHERE run_id = ? ORDER BY problem_id, seed",
            (run_id,),
        ):
            out.append(
                PoolRecord(
                    run_id=run_id,
                    problem_id=r[0],
                    seed=int(r[1]),
                    reference=r[2],
                    samples=tuple(samples.get((r[0], int(r[1])), ())),
                    usage=json.loads(r[3]),
                    scorer_usage=json.loads(r[4]),
                    seconds=float(r[5]),
                    finished=float(r[6]),
                )
            )
        return out

    def errors(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """The recorded failures (oldest first): the cell's key and the error text."""
        query = "SELECT run_id, problem_id, strategy, budget, seed, error, at FROM errors"
        query += (" WHERE run_id = ?" if run_id else "") + " ORDER BY at"
        keys = ("run_id", "problem_id", "strategy", "budget", "seed", "error", "at")
        return [
            dict(zip(keys, row, strict=True))
            for row in self.db.execute(query, (run_id,) if run_id else ())
        ]

    def error_count(self, run_id: str | None = None) -> int:
        query = "SELECT COUNT(*) FROM errors" + (" WHERE run_id = ?" if run_id else "")
        return int(self.db.execute(query, (run_id,) if run_id else ()).fetchone()[0])
