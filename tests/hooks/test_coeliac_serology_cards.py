"""M6 / M7 through HTTP: the treatment card creates the coeliac tests only under nice-ng239."""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import app_for, client, golden_request

pytestmark = pytest.mark.anyio


def _service_requests(cards: list[dict[str, Any]]) -> set[str]:
    return {
        coding["code"]
        for card in cards
        for s in card.get("suggestions", [])
        for action in s.get("actions", [])
        if action.get("resource", {}).get("resourceType") == "ServiceRequest"
        for coding in action["resource"]["code"]["coding"]
    }


async def test_M6_the_treatment_card_creates_the_coeliac_tests_under_nice_only() -> None:
    body = golden_request("m5-unknown-cause-nice", "patient-view")
    async with client(app_for("nice-ng239")) as c:
        nice = (await c.post("/cds-services/b12-patient-view", json=body)).json()["cards"]
    async with client(app_for("standard")) as c:
        standard = (await c.post("/cds-services/b12-patient-view", json=body)).json()["cards"]
    assert {"31444-3", "46128-5", "2458-8"} <= _service_requests(nice)
    assert "31444-3" in _service_requests(standard)
    assert not {"46128-5", "2458-8"} & _service_requests(standard)
