"""The pages in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

Each page must render without console errors (the CSP turns any external asset into one),
the schedule page must show every dose date of a golden patient's series, and the preview
must fit a 400 px side panel. Screenshots go to the test's temporary directory.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from support import isolated_settings

from cds_service.app import create_app

from .support import START, golden_plan, schedule_url, shown_dates

CHROMIUM = Path("/usr/bin/chromium")
os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CI"),
    reason="Debian chromium is not installed (.ci/run installs it)",
)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    app = create_app(isolated_settings(auth=False, preview=True), clock=lambda: START)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("requestfailed", lambda r: errors.append(f"failed: {r.url}"))
    pg.console_errors = errors
    yield pg
    context.close()


def _open(page: Any, url: str) -> None:
    answer = page.goto(url)
    assert answer is not None and answer.status == 200
    page.wait_for_load_state("networkidle")


def test_protocol_page_renders_without_console_errors(
    page: Any, base_url: str, tmp_path: Path
) -> None:
    _open(page, f"{base_url}/protocol")
    assert page.locator("h1").inner_text().startswith("Vitamin B12")
    assert page.locator("#S1").is_visible()
    page.screenshot(path=str(tmp_path / "protocol.png"), full_page=False)
    assert page.console_errors == []
    assert (tmp_path / "protocol.png").stat().st_size > 0


def test_schedule_page_shows_every_dose_date(page: Any, base_url: str, tmp_path: Path) -> None:
    plan, series = golden_plan("t2-pernicious-anemia-d51-0")
    rec = plan.recommended
    assert rec is not None
    _open(page, base_url + schedule_url(plan, rec.regimen_id))
    shown_in_tables = set(page.locator("table.doses-table time").evaluate_all(
        "els => els.map(e => e.getAttribute('datetime'))"))  # fmt: skip
    marks = set(page.locator("svg.timeline circle.dose").evaluate_all(
        "els => els.map(e => e.dataset.date)"))  # fmt: skip
    expected = set()
    for mr in series[rec.regimen_id]:
        expected |= {d.isoformat() for d in shown_dates(mr)}
    assert expected and expected <= shown_in_tables and expected <= marks
    assert page.locator("svg.timeline").is_visible()
    assert page.locator("a[download]").get_attribute("href").startswith("/schedule.ics?")
    page.screenshot(path=str(tmp_path / "schedule.png"), full_page=True)
    page.emulate_media(media="print")
    assert not page.locator("header.site").is_visible()
    page.screenshot(path=str(tmp_path / "schedule-print.png"), full_page=True)
    assert page.console_errors == []


@pytest.mark.parametrize("width", [400, 1280])
def test_preview_fits_the_side_panel(page: Any, base_url: str, tmp_path: Path, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    _open(page, f"{base_url}/preview")
    page.select_option("#patient", "t2-pernicious-anemia-d51-0")
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert page.locator(".panel.narrow article.card").count() >= 1
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"page scrolls sideways by {overflow} px at {width} px"
    panel = page.locator(".panel.narrow")
    assert panel.bounding_box()["width"] <= 400
    clipped = panel.evaluate(
        "p => [...p.querySelectorAll('.card, .card *')].filter("
        "e => e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX !== 'visible'"
        ").length"
    )
    page.screenshot(path=str(tmp_path / f"preview-{width}.png"), full_page=True)
    panel.locator("article.card").first.screenshot(path=str(tmp_path / f"card-{width}.png"))
    assert page.console_errors == []
    assert clipped == 0, f"{clipped} element(s) in the 400 px panel scroll sideways"
