"""The web monitor in a real browser (Debian's chromium, driven by Playwright; no browser is downloaded): sign
in, watch a running cycle's events arrive, see agent text stay text, cancel it through the confirm dialog and
see it end `cancelled`; the tables without JavaScript; the cycles table at phone width.

The screenshot of the cycle view goes to the test's directory, and to docs/serve-cycle.png (the one the
README shows) when ORCH_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from orchestration.hub import RedisHub
from tests.helpers import ROOT, celery_worker, isolated_env, wait_for
from tests.serve_helpers import TOKEN, serve_process, workspace

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"no Chromium at {CHROMIUM}: `make browser` installs Debian's chromium (as root), or set CHROMIUM=/path"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # Each launch runs in a fresh temporary profile (user-data dir) of Playwright's making.
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield instance
        finally:
            instance.close()


def _sign_in(page: Any, url: str) -> None:
    page.goto(url + "/signin")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/")


@pytest.mark.timeout(170)
def test_watch_a_cycle_live_and_cancel_it_in_the_browser(browser: Any, tmp_path: Path) -> None:
    with isolated_env(tmp_path, ORCH_SERVE_TOKEN=TOKEN) as env:
        workspace(tmp_path, Path(env["ORCH_CONFIG_DIR"]))
        hub = RedisHub(redis.Redis.from_url(env["ORCH_REDIS_URL"]), env["ORCH_KEY_PREFIX"])
        with celery_worker(env, tmp_path / "worker.log"), serve_process(env, tmp_path / "serve.log") as url:
            cycle_id = _watch_and_cancel(browser, url, hub, tmp_path)
            _without_javascript(browser, url, cycle_id)
            _at_phone_width(browser, url, tmp_path)
    assert TOKEN not in (tmp_path / "serve.log").read_text()


def _watch_and_cancel(browser: Any, url: str, hub: RedisHub, tmp: Path) -> str:
    """Starts a cycle with the page's button, watches it and cancels it; returns its id."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    dialogs: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(f"{msg.text} ({msg.location})") if msg.type == "error" else None)

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.type)
        if dialog.type == "confirm":
            dialog.accept()
        else:
            dialog.dismiss()

    page.on("dialog", on_dialog)
    _sign_in(page, url)
    page.click("form.run-form[data-workspace=demo] button")  # confirmed in the dialog, then to its page
    page.wait_for_url(f"{url}/cycles/*")
    cycle_id = page.url.rsplit("/", 1)[1]
    page.goto(url + "/")  # the table lists it; its link leads back
    page.click(f"#cycles-body a[href='/cycles/{cycle_id}']")
    page.wait_for_url(f"{url}/cycles/{cycle_id}")

    # Events arrive live: the stand-in agent says something every second.
    rows = page.locator("#events-body tr.kind-agent-message")
    rows.first.wait_for(timeout=60_000)
    first = rows.count()
    assert wait_for(lambda: rows.count() > first + 1, 20), "no new events arrived"
    bar = page.locator("#budget-bar")
    budget = float(bar.get_attribute("value") or 0)
    assert wait_for(lambda: float(bar.get_attribute("value") or 0) > budget, 10), "the budget bar stood still"
    assert page.locator("#status").inner_text().startswith("running")
    assert page.locator("#decision-title").inner_text().strip() != ""
    time.sleep(1.0)
    shot = tmp / "serve-cycle.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("ORCH_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(shot, ROOT / "docs" / "serve-cycle.png")

    # Agent text is text: markup in a message shows as written and runs nothing.
    hub.emit(cycle_id, "demo", "execute", "agent.message", {"text": HOSTILE})
    hostile = page.locator("#events-body td.detail", has_text="<script>alert(1)</script>")
    hostile.wait_for(timeout=15_000)
    assert hostile.inner_text() == HOSTILE
    assert page.locator("#events-body script, #events-body img").count() == 0

    # Cancel through the button and its confirmation; the cycle ends cancelled, its report shown.
    page.click("#cancel-form button")
    status = page.locator("#status")
    assert wait_for(lambda: status.inner_text().startswith("cancelled"), 90), status.inner_text()
    assert dialogs == ["confirm", "confirm"], dialogs  # start and cancel; no alert ever ran
    assert "cancel requested" in page.locator("#flash").inner_text()
    report = page.locator("#report")
    assert report.is_visible() and "cancelled" in report.inner_text()
    assert not page.locator("#cancel-form").is_visible()
    assert page.locator("#events-body tr.kind-cycle-finished").count() == 1
    assert problems == [], problems  # no script error, no CSP violation
    context.close()
    return cycle_id


def _without_javascript(browser: Any, url: str, cycle_id: str) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    _sign_in(page, url)
    row = page.locator("#cycles-body tr", has_text=cycle_id)
    assert "cancelled" in row.inner_text()
    assert page.locator("noscript").count() >= 1  # the page reloads itself
    page.goto(f"{url}/cycles/{cycle_id}")
    assert page.locator("#events-body tr.kind-cycle-finished").count() == 1
    assert "cancelled" in page.locator("#report").inner_text()
    context.close()


def _at_phone_width(browser: Any, url: str, tmp: Path) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    _sign_in(page, url)
    page.wait_for_selector("#cycles-body tr")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the cycles table is {width} px wide at phone width"
    page.screenshot(path=str(tmp / "serve-phone.png"), full_page=True)
    context.close()
