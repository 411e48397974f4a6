"""The web page of ``ponder serve`` in headless Chromium (Playwright), on the real model.

Chromium comes from the system's package manager (``apt-get install -y chromium``);
``PONDER_CHROMIUM`` may name another binary. ``PONDER_SCREENSHOT=1`` saves a screenshot
of the finished page to docs/images/web.png.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from ponder.server import ServerSettings, create_app
from ponder.server.main import serving_in_background

SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "images" / "web.png"
SETTINGS = ServerSettings(model="smollm2-135m-instruct", max_budget=8, max_tokens=64)


def chromium_path() -> str:
    found = os.environ.get("PONDER_CHROMIUM") or next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
    )
    if not found:
        pytest.fail(
            "no Chromium found for the web page test: install it with "
            "`apt-get install -y chromium` (Debian/Ubuntu) or set PONDER_CHROMIUM to a "
            "Chromium/Chrome binary"
        )
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path(), headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def url(engine) -> Iterator[str]:
    with serving_in_background(create_app(engine, SETTINGS)) as base:
        yield base


@pytest.fixture
def page(browser: Browser, url: str) -> Iterator[Page]:
    p = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    p.goto(url)
    expect(p.locator("#strategy option[value='self-consistency']")).to_have_count(1)
    yield p
    p.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def ask(
    page: Page, question: str, strategy: str, budget: int, max_tokens: int, config: str = ""
) -> None:
    page.fill("#question", question)
    page.fill("#config", config)
    page.select_option("#strategy", strategy)
    page.fill("#budget", str(budget))
    page.fill("#max-tokens", str(max_tokens))
    page.click("#go")


def wait_done(page: Page) -> None:
    """Wait until the run ends; fail with the page's own message when it failed."""
    page.wait_for_function(
        "() => { const s = document.getElementById('status');"
        " return s.textContent.startsWith('done') || s.classList.contains('error'); }",
        timeout=120_000,
    )
    status = page.locator("#status").inner_text()
    assert status.startswith("done"), status


def test_ask_shows_answer_candidates_votes_and_usage(page: Page):
    ask(page, "What is 17 plus 25? End with: The answer is N.", "self-consistency", 4, 48)
    wait_done(page)
    # every generated sample appeared live, and the final candidates replaced them
    expect(page.locator("#live li.live-sample")).to_have_count(4)
    expect(page.locator("#candidates li.candidate")).to_have_count(4)
    assert page.locator("#best").inner_text().strip()
    assert page.locator("#answer").inner_text().strip()
    expect(page.locator("#usage")).to_contain_text("tokens generated")
    expect(page.locator("#bars .bar-row").first).to_be_visible()
    # one candidate is marked chosen even when several samples wrote the same text
    assert page.locator("#candidates li.chosen").count() <= 1
    if page.locator("#candidates li.chosen").count():
        chosen_answer = page.locator("#candidates li.chosen .cand-answer").inner_text()
        assert chosen_answer == page.locator("#answer").inner_text()
    if os.environ.get("PONDER_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)


def test_step_search_draws_its_tree(page: Page):
    page.select_option("#scorer", "judge")
    config = '{"beam_width": 2, "max_steps": 3, "max_step_tokens": 12}'
    ask(page, "What is 6 times 7?", "beam-search", 4, 48, config)
    wait_done(page)
    if os.environ.get("PONDER_SCREENSHOT"):
        page.screenshot(path=str(SCREENSHOT.with_name("web-tree.png")), full_page=True)
    expect(page.locator("#tree-panel")).to_be_visible()
    nodes = page.locator("#tree li.node")
    assert nodes.count() >= 2
    expect(page.locator("#tree li.node.selected").first).to_be_visible()


def test_run_errors_are_shown(page: Page):
    ask(page, "What is 6 times 7?", "beam-search", 2, 16)  # no scorer chosen
    expect(page.locator("#status")).to_contain_text("scorer", timeout=30_000)
    expect(page.locator("#status")).to_have_class("status error")
