import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import zlib

import pytest
from scripted import ScriptedEngine

from ponder.engines.base import ContextOverflowError
from ponder.evals import Store, parse_strategies, run_eval
from ponder.evals.runner import Progress
from ponder.scoring import scorer as ponder_scorer
from ponder.tasks import create_task


def make_engine(task, n=8, *more_tasks):
    """Sample i of a problem is right when a hash of (question, i) says so (about 40%)."""
    problems = [p for t in (task, *more_tasks) for p in t.problems(n)]
    refs = {p.messages[0]["content"]: int(p.reference) for p in problems}

    def script(prefix, i):
        ref = refs[prefix]
        ok = zlib.crc32(f"{prefix}|{i}".encode()) % 5 < 2
        return f"Let me add. The answer is {ref if ok else ref + 1 + i % 2}."

    return ScriptedEngine(script), script


def test_every_cell_is_written_with_its_candidates(tmp_path):
    task = create_task("arithmetic", level=2)
    engine, script = make_engine(task)
    db = tmp_path / "runs.sqlite"
    s = run_eval(task, "greedy,vote", [1, 2, 4], 3, 8, db, engine, concurrency=5, progress=False)
    # greedy has no seed: one seed; vote: three
    assert s.cells_total == 8 * 3 * 1 + 8 * 3 * 3 == s.cells_run
    assert s.cells_already_done == 0 and s.cells_failed == 0
    with Store(db) as store:
        cells = store.cells(with_result=True)
        [run] = store.runs()
    assert len(cells) == s.cells_total
    assert {(c.strategy, c.seed) for c in cells} == {
        ("greedy", 0),
        *(("vote", k) for k in range(3)),
    }
    refs = {p.id: p for p in task.problems(8)}
    for c in cells:
        problem = refs[c.problem_id]
        n = 1 if c.strategy == "greedy" else c.budget
        assert len(c.candidates_correct) == n == len(c.candidate_answers)
        texts = [script(problem.messages[0]["content"], i) for i in range(n)]
        assert list(c.candidates_correct) == [f"is {problem.reference}." in t for t in texts]
        assert c.reference == problem.reference
        assert c.correct == (c.answer == problem.reference)
        assert c.tokens_generated == sum(len(t.split()) for t in texts)
        assert c.prompt_tokens_computed > 0 and c.seconds >= 0
        assert c.result["strategy"] in ("greedy", "self-consistency")
    assert sum(c.correct for c in cells) == s.correct
    cfg = run["config"]
    assert cfg["task"] == "arithmetic" and cfg["task_options"]["level"] == 2
    assert cfg["model"] == {"name": "scripted", "sha256": None}
    assert cfg["strategies"]["vote"]["config"]["temperature"] == 0.7
    assert cfg["strategies"]["vote"]["config"]["answer_kind"] == "number"  # the task's
    assert cfg["ponder_version"] and run["grid"] == {
        "budgets": [1, 2, 4],
        "seeds": [0, 1, 2],
        "limit": 8,
    }


def test_resume_skips_finished_cells_and_redoes_lost_ones(tmp_path):
    task = create_task("arithmetic")
    engine, _ = make_engine(task, 6)
    db = tmp_path / "runs.sqlite"
    first = run_eval(task, "vote", [1, 3], 2, 6, db, engine, progress=False)
    assert first.cells_run == 24
    with Store(db) as store:
        before = {c.key: c.finished for c in store.cells()}
    # lose four cells (as if the process died before writing them)
    lost = sorted(before)[:4]
    con = sqlite3.connect(db)
    con.executemany(
        "DELETE FROM cells WHERE problem_id=? AND strategy=? AND budget=? AND seed=?", lost
    )
    con.commit()
    con.close()
    engine.requests.clear()
    second = run_eval(task, "vote", [1, 3], 2, 6, db, engine, progress=False)
    assert (second.run_id, second.cells_already_done, second.cells_run) == (first.run_id, 20, 4)
    assert len(engine.requests) == 4
    with Store(db) as store:
        after = {c.key: c.finished for c in store.cells()}
    assert set(after) == set(before)
    assert all(after[k] == before[k] for k in before if k not in lost)
    assert all(after[k] > before[k] for k in lost)
    third = run_eval(task, "vote", [1, 3], 2, 6, db, engine, progress=False)
    assert third.cells_run == 0 and third.cells_already_done == 24


def test_a_different_configuration_is_a_different_run(tmp_path):
    task, level2 = create_task("arithmetic"), create_task("arithmetic", level=2)
    engine, _ = make_engine(task, 4, level2)
    db = tmp_path / "runs.sqlite"
    a = run_eval(task, "vote", [2], 1, 4, db, engine, progress=False)
    b = run_eval(task, "vote[temperature=1.0]", [2], 1, 4, db, engine, progress=False)
    c = run_eval(level2, "vote", [2], 1, 4, db, engine, progress=False)
    assert len({a.run_id, b.run_id, c.run_id}) == 3
    assert b.cells_run == 4 and c.cells_run == 4
    # more budgets for the same configuration extend the same run
    d = run_eval(task, "vote", [2, 4], 1, 4, db, engine, progress=False)
    assert d.run_id == a.run_id and (d.cells_already_done, d.cells_run) == (4, 4)
    with Store(db) as store:
        assert len(store.runs()) == 3
        assert (
            json.loads(json.dumps(store.runs()[1]["config"]))["strategies"][
                "vote[temperature=1.0]"
            ]["config"]["temperature"]
            == 1.0
        )


def test_scorer_options_make_another_run(tmp_path):
    # Found in stop 33: only the scorer's name was in the run's configuration, so a run with
    # --scorer-set inline=true resumed (and mixed with) the cells of the run without it.
    task = create_task("arithmetic")
    _, solve = make_engine(task, 2)
    questions = {p.messages[0]["content"] for p in task.problems(2)}
    engine = ScriptedEngine(lambda prefix, i: solve(prefix, i) if prefix in questions else "Yes")
    db = tmp_path / "runs.sqlite"
    plain = run_eval(task, "best-of-n", [2], 1, 2, db, engine, scorer="judge", progress=False)
    inline = run_eval(task, "best-of-n", [2], 1, 2, db, engine, scorer="judge",
                      scorer_options={"inline": True}, progress=False)  # fmt: skip
    assert inline.run_id != plain.run_id and inline.cells_run == 2
    again = run_eval(task, "best-of-n", [2], 1, 2, db, engine, scorer="judge",
                     scorer_options={"inline": True}, progress=False)  # fmt: skip
    assert again.run_id == inline.run_id and again.cells_run == 0
    # the inline judge was built: its requests continue the problem's own conversation
    assert any(len(r.prefix) == 3 for r in engine.requests if not isinstance(r.prefix, str))
    with Store(db) as store:
        configs = {r["run_id"]: r["config"] for r in store.runs()}
    # a run without options keeps the configuration (and so the id) it always had
    assert "scorer_options" not in configs[plain.run_id]
    assert configs[inline.run_id]["scorer_options"] == {"inline": True}


class FlakyEngine(ScriptedEngine):
    """Fails every request for one question until ``healed``."""

    def __init__(self, script, bad_question):
        super().__init__(script)
        self.bad = bad_question
        self.healed = False

    async def generate(self, requests):
        if not self.healed and any(self.bad in self.prefix_text(r) for r in requests):
            raise ContextOverflowError("prompt too long for the test")
        return await super().generate(requests)


def test_engine_failures_are_recorded_and_retried(tmp_path):
    task = create_task("arithmetic")
    _, script = make_engine(task, 5)
    bad = task.problems(5)[2].messages[0]["content"]
    engine = FlakyEngine(script, bad)
    db = tmp_path / "runs.sqlite"
    s = run_eval(task, "vote", [1, 2], 1, 5, db, engine, progress=False)
    assert (s.cells_run, s.cells_failed) == (8, 2)
    with Store(db) as store:
        assert len(store.cells()) == 8 and store.error_count() == 2
    engine.healed = True
    s2 = run_eval(task, "vote", [1, 2], 1, 5, db, engine, progress=False)
    assert (s2.cells_already_done, s2.cells_run, s2.cells_failed) == (8, 2, 0)


def test_bad_configuration_stops_the_run(tmp_path):
    task = create_task("arithmetic")
    engine, _ = make_engine(task, 2)
    with pytest.raises(ValueError, match="no setting 'temprature'"):
        run_eval(task, "vote[temprature=1]", [1], 1, 2, tmp_path / "r.sqlite", engine)
    with pytest.raises(ValueError, match="unknown strategy"):
        parse_strategies("greedy,nonesuch")
    with pytest.raises(ValueError, match="budgets"):
        run_eval(task, "vote", [0], 1, 2, tmp_path / "r.sqlite", engine)


def test_a_cell_that_raises_valueerror_is_recorded_and_the_run_goes_on(tmp_path):
    """Issue #19 item 7: one cell's ValueError fails that cell, not the whole run."""
    task = create_task("arithmetic")
    engine, _ = make_engine(task, 4)
    bad = task.problems(4)[1].id

    def verifier(problem, text):
        return "not a number" if problem.id == bad else 1.0

    db = tmp_path / "runs.sqlite"
    scorer = ponder_scorer(verifier, name="picky")
    s = run_eval(task, "best-of-n", [1, 2], 1, 4, db, engine, scorer=scorer, progress=False)
    assert (s.cells_run, s.cells_failed, s.cells_total) == (6, 2, 8)
    assert len(s.failures) == 2
    assert all(bad in f and "ValueError" in f and "must return a number" in f for f in s.failures)
    with Store(db) as store:
        assert len(store.cells()) == 6 and store.error_count() == 2
        assert {e["problem_id"] for e in store.errors()} == {bad}


def test_parse_strategies():
    specs = parse_strategies("greedy, vote[temperature=1.0; max_tokens=64],vote")
    assert [s.label for s in specs] == ["greedy", "vote[temperature=1.0;max_tokens=64]", "vote"]
    assert specs[1].config == {"temperature": 1.0, "max_tokens": 64}
    with pytest.raises(ValueError, match="repeat"):
        parse_strategies("vote,vote")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_strategies("vote[temperature]")


def test_progress_line_shows_accuracy_and_eta():
    out = io.StringIO()
    bar = Progress(4, stream=out, interval=0.0)
    bar.update(True)
    bar.update(False)
    bar.update(None)
    line = out.getvalue().splitlines()[-1]
    assert "3/4" in line and "acc 0.500" in line and "failed 1" in line and "ETA" in line


def test_progress_eta_weighs_each_cell_by_its_budget(monkeypatch):
    """A grid runs its small budgets first: after the budget-1 cell of [1, 1, 16] the ETA
    must foresee 17 more units of work (17x the time so far), not 2 more cells (2x)."""
    clock = iter([0.0] + [10.0] * 5)
    monkeypatch.setattr("ponder.evals.runner.time.monotonic", lambda: next(clock))
    out = io.StringIO()
    bar = Progress(3, stream=out, interval=0.0, work=[1, 1, 16])
    bar.update(True, 1)
    assert bar.line().endswith("elapsed 0m10s ETA 2m50s")
    with pytest.raises(ValueError, match="one weight per item"):
        Progress(3, work=[1, 2])


def _rows(db):
    con = sqlite3.connect(db)
    try:
        return dict(
            ((p, s, b, sd), f)
            for p, s, b, sd, f in con.execute(
                "SELECT problem_id, strategy, budget, seed, finished FROM cells"
            )
        )
    except sqlite3.OperationalError:  # the table does not exist yet
        return {}
    finally:
        con.close()


def test_sigkill_and_restart_loses_nothing(small_model, tmp_path):
    db = tmp_path / "runs.sqlite"
    cmd = [
        sys.executable, "-m", "ponder.cli", "eval", "arithmetic", "--model", small_model,
        "--strategies", "greedy", "--budgets", "1", "--limit", "14", "--max-tokens", "12",
        "--concurrency", "1", "--n-ctx", "2048", "--threads", "1", "--db", str(db),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(_rows(db)) < 3:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no cells written in 120 s"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    survived = _rows(db)
    assert 3 <= len(survived) < 14, "the run should have been killed half-way"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{len(survived)} already done" in done.stdout
    assert f"{14 - len(survived)} cells run" in done.stdout
    final = _rows(db)
    assert len(final) == 14
    assert all(final[k] == survived[k] for k in survived)  # finished cells were not redone
