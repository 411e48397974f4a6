"""Committed results: export pools and cells to compact text, import them to resume a run,
and regenerate docs/RESULTS.md with its plots from them without a model."""

import gzip
import json
from pathlib import Path

from test_pool import make_engine, verifier

from ponder.cli import main
from ponder.evals import Store, run_eval
from ponder.evals.estimators import estimate, parse_estimators
from ponder.evals.export import export_results, import_results, load_results
from ponder.evals.pool import PoolConfig, run_pool
from ponder.evals.report import pool_verifier_quality, text_report
from ponder.evals.results import build, rule_key, verifier_table
from ponder.evals.store import PoolRecord, SampleRecord
from ponder.scoring import scorer as make_scorer
from ponder.tasks import create_task

FIXTURE = Path(__file__).parent / "data" / "results"


def fill(db, levels=(1, 2), count=4, n=4):
    """Pools (with a scorer) and greedy/vote cells on arithmetic levels, scripted engine."""
    scorers = {"v": make_scorer(verifier, name="v")}
    for level in levels:
        task = create_task("arithmetic", level=level)
        engine = make_engine(task, count)
        run_pool(task, PoolConfig(n=n), 1, count, db, engine, scorers, progress=False)
        run_eval(task, "greedy,vote", [1, 4], 1, count, db, engine, progress=False)


def test_export_import_round_trip_and_resume(tmp_path):
    db = tmp_path / "a.sqlite"
    task = create_task("arithmetic", level=2)
    engine = make_engine(task, 6)
    scorers = {"v": make_scorer(verifier, name="v")}
    run_pool(task, PoolConfig(n=4), 1, 4, db, engine, scorers, progress=False)
    run_eval(task, "vote", [2], 1, 4, db, engine, progress=False)
    path = tmp_path / "results" / "part1.jsonl.gz"
    with Store(db) as store:
        counts = export_results(store, path)
        pools = {r["run_id"]: store.pools(r["run_id"]) for r in store.runs()}
        cells = store.cells()
    assert counts == {"run": 2, "pool": 4, "cell": 4}
    again = tmp_path / "again.jsonl.gz"
    with Store(db) as store:
        export_results(store, again)
    assert again.read_bytes() == path.read_bytes()  # same data, same bytes
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    assert all(json.loads(line)["kind"] in ("run", "pool", "cell") for line in lines)

    # a second part on another machine: import the committed data, then run the whole grid
    fresh = tmp_path / "b.sqlite"
    with Store(fresh) as store:
        import_results([path], store)
        assert {r["run_id"]: store.pools(r["run_id"]) for r in store.runs()} == pools
        assert [c.key for c in store.cells()] == [c.key for c in cells]
    before = len(engine.requests)
    s = run_pool(task, PoolConfig(n=4), 1, 6, fresh, engine, scorers, progress=False)
    assert (s.pools_already_done, s.pools_run) == (4, 2)
    e = run_eval(task, "vote", [2], 1, 6, fresh, engine, progress=False)
    assert (e.cells_already_done, e.cells_run) == (4, 2)
    assert len(engine.requests) - before == 4  # only the missing pools and cells ran
    with Store(fresh) as store:
        import_results([path], store)  # importing again adds nothing
        assert len(store.pools(s.run_id)) == 6


def test_results_page_regenerates_from_the_committed_fixture(tmp_path, capsys):
    files = sorted(FIXTURE.glob("*.jsonl.gz"))
    assert files, "tests/data/results holds a tiny committed fixture"
    out, images = tmp_path / "RESULTS.md", tmp_path / "images"
    text = build(load_results(files), out, images, intro="Intro line.", subsets=50)
    assert out.read_text() == text and "Intro line." in text
    assert "| self-consistency | 4 |" in text and "| best-of-n@v | 2 |" in text
    assert "| coverage | 1 |" in text and "| vote | 4 |" in text
    assert "Accuracy % by level" in text and "L1 (4)" in text and "L2 (4)" in text
    # the pool's scorer as a verifier of the samples, from the same numbers as the report
    assert (
        "| scorer | samples | correct % | AUROC |" in text and "\n| v | 32 | 46.9 | 0.610 |" in text
    )
    # the vote cells next to the pool's self-consistency estimate at k = budget
    assert "| vote | 4 | self-consistency |" in text
    # and the cost of the matched grid both ways: tokens, wall time, summed seconds
    assert "inside the cell's interval in 2 of 2 cells" in text
    assert "(1 strategy, budgets 1, 4; 8 problems each), against 8 pools" in text
    assert "| cells ÷ pools | 1.2× |" in text
    # and every cell against the pool's rules at k = n on the cell's own problems
    assert "| vote | 4 | 8 | 50.0 (21.5–78.5) | 37.5 (13.7–69.4) | +12.5 ± 24.5 |" in text
    pngs = sorted(images.glob("*.png"))
    assert len(pngs) == 2 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert all(f"images/{p.name}" in text for p in pngs)
    # the command line does the same from a folder
    argv = ["results", "build", "--data", str(FIXTURE), "--out", str(out)]
    assert main([*argv, "--images", str(images), "--subsets", "50"]) == 0
    assert out.read_text() == text.replace("Intro line.\n\n", "")
    # and says on stderr which group it is estimating (a group can take minutes)
    progress = capsys.readouterr().err.splitlines()
    expected = "[1/1] arithmetic · scripted · task seed 0: 8 pools, 32 cells"
    assert len(progress) == 1 and progress[0].endswith(expected), progress
    # a second page into the same images folder names its plots apart
    other = tmp_path / "COST.md"
    argv = ["results", "build", "--data", str(FIXTURE), "--out", str(other)]
    assert main([*argv, "--images", str(images), "--image-prefix", "cost-"]) == 0
    assert len(sorted(images.glob("*.png"))) == 4 and "images/cost-" in other.read_text()


def test_cells_are_set_against_the_pool_on_their_own_problems(tmp_path):
    """A cell run on part of the pool's problems is compared with the pool's rules on
    exactly those problems, paired: on all the pool's problems self-consistency differs."""
    db = tmp_path / "a.sqlite"
    task = create_task("arithmetic", level=2)
    engine = make_engine(task, 8)
    run_pool(task, PoolConfig(n=4), 1, 8, db, engine, {}, progress=False)
    run_eval(task, "vote,early-stop-vote", [4, 2], 1, 3, db, engine, progress=False)
    with Store(db) as store:
        pools = [p for r in store.runs() for p in store.pools(r["run_id"])]
        every = [c for c in store.cells() if c.strategy == "vote"]
        text = build(store, tmp_path / "R.md", tmp_path / "images", subsets=50)
    cells = [c for c in every if c.budget == 4]
    mine = {c.problem_id for c in cells}
    specs = parse_estimators("self-consistency", [])
    (on_three,) = estimate([p for p in pools if p.problem_id in mine], specs, ks=[4])
    (on_all,) = estimate(pools, specs, ks=[4])
    assert len(mine) == 3 and on_three.accuracy != on_all.accuracy
    (row,) = [x for x in text.splitlines() if x.startswith("| vote | 4 | 3 |") and " / " in x]
    cell = sum(c.correct for c in cells) / 3
    diff = 100 * (cell - on_three.accuracy)
    assert f"| {100 * on_three.accuracy:.1f} (" in row and f"| {diff:+.1f} ± " in row
    tokens = sum(c.tokens_generated for c in cells) / 3
    assert f"| {tokens:,.0f} / {on_three.tokens_per_problem:,.0f} (" in row
    assert "| as @4 |" in row  # a cell at the pool's size has no second comparison

    # a cell at a smaller budget is also set against self-consistency at its budget
    two = [c for c in every if c.budget == 2]
    (row,) = [x for x in text.splitlines() if x.startswith("| vote | 2 | 3 |") and " / " in x]
    (at_two,) = estimate([p for p in pools if p.problem_id in mine], specs, ks=[2], subsets=50)
    diff = 100 * (sum(c.correct for c in two) / 3 - at_two.accuracy)
    assert f"| {100 * at_two.accuracy:.1f} | {diff:+.1f} ± " in row
    assert f"| {at_two.tokens_per_problem:,.0f} |" in row

    # and the cost comparison sets each cell against the estimate on its 3 problems too
    (row,) = [x for x in text.splitlines() if x.startswith("| vote | 4 | self-consistency |")]
    (at_four,) = estimate([p for p in pools if p.problem_id in mine], specs, ks=[4], subsets=50)
    assert f"| {100 * at_four.accuracy:.1f} ± " in row
    assert f"| {100 * on_all.accuracy:.1f} ± " not in row
    # an adaptive cell is checked against the pool's replay of it on its problems
    (row,) = [x for x in text.splitlines() if x.startswith("| early-stop-vote | 4 | early-")]
    esc = parse_estimators("early-stop-vote", [])
    (at_four,) = estimate([p for p in pools if p.problem_id in mine], esc, ks=[4], subsets=50)
    assert f"| {100 * at_four.accuracy:.1f} ± {100 * at_four.se:.2f} |" in row
    # cells on 3 of the pool's 8 problems are no grid: no cost set against the whole pool's
    assert "inside the cell's interval in 4 of 4 cells.\n" in text
    assert "| cells ÷ pools |" not in text


def test_an_online_confidence_vote_cell_is_not_matched_with_the_offline_estimate():
    pool = rule_key("confidence-vote", pool=True)
    assert rule_key("confidence-vote") != pool  # a cell runs online by default
    assert rule_key("confidence-vote[mode=online]") != pool
    assert rule_key("confidence-vote[mode = offline; temperature=0.7]") == pool
    assert rule_key("vote[temperature=0.7]") == rule_key("self-consistency", pool=True)


def _pool(problem, scored):
    samples = tuple(
        SampleRecord(f"t{i}", None, 10, "stop", ok, {}, {"v": score} if score is not None else {})
        for i, (score, ok) in enumerate(scored)
    )
    return PoolRecord("r", problem, 0, None, samples, {}, {}, 0.0)


def test_pool_scorers_are_reported_as_verifiers_of_the_samples(tmp_path):
    # p1: correct 0.9 and 0.2, incorrect 0.5 and 0.1; p2: correct 0.8, incorrect 0.8 and one
    # unscored sample (left out). Pairs correct > incorrect: 0.9 beats 3, 0.2 beats 1,
    # 0.8 beats 2 with one tie (0.5), so AUROC = (3 + 1 + 2.5) / (3 * 3).
    pools = [
        _pool("p1", [(0.9, True), (0.2, True), (0.5, False), (0.1, False)]),
        _pool("p2", [(0.8, True), (0.8, False), (None, False)]),
    ]
    q = pool_verifier_quality(pools)["v"]
    assert q["n"] == 6 and q["n_correct"] == 3 and q["problems"] == 2
    assert q["auroc"] == (3 + 1 + 2.5) / 9
    assert q["false_positive_rate"] == 2 / 3 and q["false_negative_rate"] == 1 / 3
    row = verifier_table({"v": q})[2]
    assert row.startswith("| v | 6 | 50.0 | 0.722 | 0.667 | 0.333 |")
    # the text report of a pool run names its scorer as a verifier too
    db = tmp_path / "r.sqlite"
    fill(db, levels=(1,), count=3, n=4)
    with Store(db) as store:
        report = text_report(store)
    assert "verifier of v: 12 graded candidates" in report


def write_fixture(folder=FIXTURE):
    """Regenerate the committed fixture (run by hand: python tests/test_pool_results.py)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "fixture.sqlite"
        fill(db)
        with Store(db) as store:
            export_results(store, folder / "arithmetic.jsonl.gz")


if __name__ == "__main__":
    write_fixture()
