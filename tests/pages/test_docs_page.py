"""/docs in headless Chromium: Swagger UI served by the service renders every operation of the
OpenAPI description with no console error and no request to anywhere but the service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from .test_browser import base_url, browser, page, pytestmark  # noqa: F401  (shared fixtures)


def test_docs_show_every_operation_without_leaving_the_service(
    page: Any,  # noqa: F811
    base_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    requested: list[str] = []
    refused: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.on(
        "response", lambda r: refused.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )
    answer = page.goto(f"{base_url}/docs")
    assert answer is not None and answer.status == 200
    policy = answer.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)
    page.wait_for_load_state("networkidle")
    shown = set(
        page.locator(".opblock-summary").evaluate_all(
            "els => els.map(e => e.querySelector('.opblock-summary-method').innerText"
            " + ' ' + e.querySelector('.opblock-summary-path').dataset.path)"
        )
    )
    document = httpx.get(f"{base_url}/openapi.json", timeout=10).json()
    expected = {f"{m.upper()} {p}" for p, ops in document["paths"].items() for m in ops}
    assert shown == expected
    assert page.locator(".info .title").first.inner_text().startswith(document["info"]["title"])
    page.screenshot(path=str(tmp_path / "docs.png"), full_page=False)
    outside = [u for u in requested if not u.startswith((base_url, "data:"))]
    assert outside == []
    assert refused == []
    assert page.console_errors == []
