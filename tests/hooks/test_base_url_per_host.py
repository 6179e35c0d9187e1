"""The cards' links point at the URL each request reached the service at (remembered per
scheme, server, root path and Host), unless a public base URL is configured."""

from __future__ import annotations

import pytest
from support import isolated_settings

from cds_service.app import create_app

from .helpers import START, AppClient, golden_request

pytestmark = pytest.mark.anyio
PV = "/cds-services/b12-patient-view"


def _sources(cards: list[dict[str, object]]) -> set[str]:
    return {str(card["source"]["url"]) for card in cards}  # type: ignore[index]


async def test_links_follow_the_host_each_request_used() -> None:
    app = create_app(isolated_settings(auth=False), clock=lambda: START)
    body = golden_request("t6-unspecified-low-b12", "patient-view")
    async with AppClient(app, base_url="http://first.example") as c:
        for host in ("first.example", "second.example:8443", "first.example"):
            r = await c.post(PV, json=body, headers={"host": host})
            assert r.status_code == 200, r.text
            assert _sources(r.json()["cards"]) == {f"http://{host}/protocol"}


async def test_a_public_base_url_wins() -> None:
    settings = isolated_settings(auth=False, public_base_url="https://cds.example.org")
    app = create_app(settings, clock=lambda: START)
    body = golden_request("t6-unspecified-low-b12", "patient-view")
    async with AppClient(app, base_url="http://internal:8000") as c:
        r = await c.post(PV, json=body)
    assert _sources(r.json()["cards"]) == {"https://cds.example.org/protocol"}


def test_an_asgi_server_that_gives_its_address_as_a_list_is_answered() -> None:
    """The ASGI spec types `server` as a two-item iterable: Starlette's TestClient sends a
    list (unhashable), uvicorn a tuple; either must reach the cards, not a TypeError."""
    from fastapi.testclient import TestClient

    app = create_app(isolated_settings(auth=False), clock=lambda: START)
    body = golden_request("t6-unspecified-low-b12", "patient-view")
    with TestClient(app, base_url="http://testserver") as c:
        r = c.post(PV, json=body)
    assert r.status_code == 200, r.text
    assert _sources(r.json()["cards"]) == {"http://testserver/protocol"}
