"""``ponder bench TASK --ray``: cells sharded over Ray actors on a local Ray instance, each
actor with its own embedded engine on the real small model; results gathered into the
same store as a local run, which resumes from them."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

pytest.importorskip("ray", reason="Ray is a dev dependency: `make setup` installs it")


def _cells(db) -> list[tuple[str, str, int, int, int]]:
    con = sqlite3.connect(db)
    try:
        return sorted(con.execute("SELECT problem_id, strategy, budget, seed, correct FROM cells"))
    finally:
        con.close()


def test_ray_shards_cells_over_actors_into_one_store(small_model, tmp_path):
    db = tmp_path / "runs.sqlite"
    common = [
        sys.executable, "-m", "ponder.cli", "eval", "arithmetic", "--model", small_model,
        "--strategies", "greedy,vote", "--budgets", "2", "--limit", "3", "--max-tokens", "16",
        "--n-ctx", "2048", "--threads", "1", "--concurrency", "2", "--db", str(db),
    ]  # fmt: skip
    ray = [*common, "--ray", "local", "--ray-actors", "2", "--ray-cpus", "0.5"]
    done = subprocess.run(ray, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Ray: 2 actors on" in done.stderr
    assert "6 cells run" in done.stdout and "0 already done" in done.stdout
    cells = _cells(db)
    assert len(cells) == 6
    assert {c[1] for c in cells} == {"greedy", "vote"}
    # The same configuration run locally is the same run: everything is already there.
    again = subprocess.run(common, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 cells run" in again.stdout and "6 already done" in again.stdout
    assert _cells(db) == cells


def test_ray_bad_input_is_a_clear_error(tmp_path):
    cmd = [
        sys.executable, "-m", "ponder.cli", "eval", "arithmetic", "--limit", "1",
        "--db", str(tmp_path / "r.sqlite"), "--ray", "local", "--ray-actors", "0",
    ]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "--ray-actors must be >= 1" in p.stderr
