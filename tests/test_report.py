import base64
import json
import re
import shutil
import subprocess
import sys
import zlib

import pytest
from scripted import ScriptedEngine

from ponder.evals import Store, run_eval
from ponder.evals.metrics import summarize
from ponder.evals.plots import Series, line_plot
from ponder.evals.report import html_report, json_report, text_report
from ponder.tasks import create_task

STRATEGIES = "greedy,vote,vote[temperature=1.0]"
BUDGETS = [1, 2, 4, 8]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    task = create_task("arithmetic", level=2)
    refs = {p.messages[0]["content"]: int(p.reference) for p in task.problems(12)}

    def script(prefix, i):
        h = zlib.crc32(f"{prefix}|{i}".encode())
        ok = h % 100 < 15 + zlib.crc32(prefix.encode()) % 50
        return "so " * (h % 9) + f"The answer is {refs[prefix] + (0 if ok else 1 + h % 3)}."

    path = tmp_path_factory.mktemp("report") / "runs.sqlite"
    run_eval(task, STRATEGIES, BUDGETS, 2, 12, path, ScriptedEngine(script), progress=False)
    return path


def test_text_report_has_a_row_per_strategy_and_budget(db):
    with Store(db) as store:
        text = text_report(store)
        cells = store.cells()
    assert text.startswith("run ") and "task arithmetic" in text and "level=2" in text
    for strategy in STRATEGIES.split(","):
        for b in BUDGETS:
            group = [c for c in cells if c.strategy == strategy and c.budget == b]
            s = summarize(group)
            row = re.search(
                rf"^{re.escape(strategy)}\s+{b}\s+12\s+{len(group)}\s+(\S+)\s+(\S+)", text, re.M
            )
            assert row, (strategy, b)
            assert row.group(1) == f"{s.accuracy:.3f}"
            assert row.group(2) == f"{s.wilson[0]:.3f}-{s.wilson[1]:.3f}"
    assert "coverage(k) ≈ exp(" in text


def test_json_report_is_strict_json(db):
    with Store(db) as store:
        report = json_report(store)
    blob = json.dumps(report, allow_nan=False)
    rows = json.loads(blob)["rows"]
    assert len(rows) == 3 * len(BUDGETS)
    vote8 = next(r for r in rows if r["strategy"] == "vote" and r["budget"] == 8)
    assert set(vote8["coverage"]) == {"1", "2", "4", "8"}
    assert vote8["problems"] == 12 and vote8["cells"] == 24
    assert 0 <= vote8["wilson"][0] <= vote8["accuracy"] <= vote8["wilson"][1] <= 1
    assert vote8["power_law"] is not None and vote8["power_law"]["a"] < 0


PNG = b"\x89PNG\r\n\x1a\n"


def _images(page):
    return [
        base64.b64decode(uri) for uri in re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    ]


def test_html_is_self_contained_with_plots_and_table(db):
    with Store(db) as store:
        page = html_report(store)
    images = _images(page)
    assert len(images) == 3 and all(png.startswith(PNG) and len(png) > 5000 for png in images)
    assert page.count("<table") == 1
    assert page.count("<tr>") == 1 + 3 * len(BUDGETS)
    for title in ("accuracy vs tokens", "coverage vs k", "cost of a correct answer"):
        assert f'alt="{title}"' in page
    # nothing loaded from elsewhere: no scripts, links or URLs; images are inline data
    assert not re.search(r"<script|<link|href=|src=\"(?!data:image/png;base64,)", page)
    assert not re.findall(r"https?://[^\s\"']+", page)


def test_plots_handle_empty_and_single_points():
    empty = line_plot("t", [], "x", "y", empty="no correct answers yet")
    one = line_plot("t", [Series("s", ((4.0, 0.5, 0.2, 0.8),), "#000")], "x", "y")
    assert empty.startswith(PNG) and one.startswith(PNG) and empty != one


def test_a_pool_run_is_reported_with_every_rule_at_every_k(tmp_path):
    from test_pool import make_engine

    from ponder.evals.pool import PoolConfig, run_pool

    task = create_task("arithmetic", level=2)
    db = tmp_path / "runs.sqlite"
    run_pool(task, PoolConfig(n=4), 1, 5, db, make_engine(task, 5), progress=False)
    with Store(db) as store:
        text, page = text_report(store), html_report(store)
    assert "pool of 4" in text and "MC s.e." in text
    for rule in ("coverage", "self-consistency", "rpc", "confidence-vote"):
        assert all(f"{rule} " in line for line in text.splitlines() if line.startswith(rule + " "))
        assert len([ln for ln in text.splitlines() if ln.startswith(rule + " ")]) == 3  # k 1, 2, 4
    assert len(_images(page)) == 2 and page.count("<table") == 1


def ponder(*args):
    return subprocess.run(
        [sys.executable, "-m", "ponder.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_report_command(db, tmp_path):
    p = ponder("report", str(db))
    assert p.returncode == 0, p.stderr
    assert "vote[temperature=1.0]" in p.stdout and "95% Wilson" in p.stdout
    out = tmp_path / "report.html"
    p = ponder("report", str(db), "-o", str(out))
    assert p.returncode == 0 and len(_images(out.read_text())) == 3
    p = ponder("report", str(db), "--json")
    assert p.returncode == 0 and len(json.loads(p.stdout)["rows"]) == 12
    p = ponder("report", str(tmp_path / "missing.sqlite"))
    assert p.returncode == 2 and "no results database" in p.stderr
    assert not (tmp_path / "missing.sqlite").exists()


def test_report_renders_in_headless_chromium(db, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("headless Chromium is needed for this test: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    page_file = tmp_path / "report.html"
    with Store(db) as store:
        page_file.write_text(html_report(store), encoding="utf-8")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            requests = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri())
            shown = page.query_selector_all("img.plot")
            boxes = [img.bounding_box() for img in shown]
            assert len(boxes) == 3 and all(
                b and b["width"] > 300 and b["height"] > 200 for b in boxes
            )
            # every image decoded: a broken data URI has naturalWidth 0
            assert all(img.evaluate("i => i.naturalWidth") > 300 for img in shown)
            assert len(page.query_selector_all("table tr")) == 1 + 3 * len(BUDGETS)
            assert requests == [page_file.as_uri()]  # nothing else was fetched
        finally:
            browser.close()


def test_verifier_quality_of_a_scored_strategy_is_in_every_report(tmp_path):
    """best-of-n with a scorer that knows the answer 80% of the time: the report shows the
    scorer's false-positive/negative rates and AUROC, computed from the graded candidates."""
    from ponder.scoring import scorer as make_scorer

    task = create_task("arithmetic", level=1)
    problems = task.problems(6)
    refs = {p.messages[0]["content"]: int(p.reference) for p in problems}
    by_text = {p.messages[0]["content"]: p for p in problems}

    def script(prefix, i):
        return f"The answer is {refs[prefix] + (0 if i % 2 == 0 else 1)}."

    def oracle(problem, text):
        right = f"is {refs[problem.messages[0]['content']]}." in text
        flip = zlib.crc32(text.encode()) % 5 == 0  # wrong one time in five
        return float(right != flip)

    assert len(by_text) == 6
    path = tmp_path / "runs.sqlite"
    run_eval(task, "best-of-n", [4], 1, 6, path, ScriptedEngine(script),
             scorer=make_scorer(oracle), progress=False)  # fmt: skip
    with Store(path) as store:
        text = text_report(store)
        data = json_report(store)
        page = html_report(store)
    assert re.search(r"verifier of best-of-n: 24 graded candidates, FPR [\d.]+, FNR [\d.]+", text)
    [quality] = data["verifier"].values()
    q = quality["best-of-n"]
    assert q["n"] == 24 and q["n_correct"] == 12
    assert 0 <= q["false_positive_rate"] < 0.5 and 0.5 < q["auroc"] <= 1
    assert "Verifier quality" in page and "AUROC" in page
