"""Helpers for the CDS Hooks HTTP tests: apps per profile, golden requests, card shape rules."""

from __future__ import annotations

import json
import tempfile
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import httpx
from auth.keys import jwks_of, make_token, new_ec_key
from fastapi import FastAPI
from support import isolated_settings

from cds_service.app import create_app

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = ROOT / "fhir_examples" / "requests"
START = date(2026, 12, 1)
INDICATORS = {"info", "warning", "critical"}


BASE_URL = "http://testserver"
EHR_ISSUER = "https://ehr.example.org"
EHR_KEY = new_ec_key("ehr-signing-key-1")


@cache
def _clients_file() -> str:
    """A trusted-clients file with the test EHR's public key inline (written once per run)."""
    path = Path(tempfile.mkdtemp(prefix="b12-cds-clients-")) / "clients.json"
    path.write_text(json.dumps([{"iss": EHR_ISSUER, "jwks": jwks_of(EHR_KEY)}]))
    return str(path)


class SignedByEhr(httpx.Auth):
    """Signs every POST as the EHR does: a fresh ES384 JWT whose audience is the called URL."""

    def auth_flow(self, request: httpx.Request) -> Any:
        if request.method == "POST":
            audience = str(request.url.copy_with(query=None))
            token = make_token(EHR_KEY, EHR_KEY.kid, EHR_ISSUER, audience)
            request.headers["Authorization"] = f"Bearer {token}"
        yield request


@cache
def app_for(profile: str | None = None) -> FastAPI:
    """The service as deployed: authentication on, requests signed by a trusted EHR."""
    settings = isolated_settings(
        auth=True, public_base_url=BASE_URL, clients_file=_clients_file(), profile=profile
    )
    return create_app(settings, clock=lambda: START)


class AppClient(httpx.AsyncClient):
    """Leaves when the app has written its audit records, before the test's loop closes."""

    def __init__(self, app: FastAPI, **kwargs: Any) -> None:
        super().__init__(transport=httpx.ASGITransport(app=app), **kwargs)
        self.app = app

    async def __aexit__(self, *exc: Any) -> None:
        await self.app.state.cds.store.audit.flush()
        await super().__aexit__(*exc)


def client(app: FastAPI | None = None, *, signed: bool = True) -> AppClient:
    """A client of the app; `signed=False` for tests that set the Authorization header."""
    return AppClient(app or app_for(), base_url=BASE_URL, auth=SignedByEhr() if signed else None)


def golden_requests() -> list[tuple[str, str]]:
    """(slug, hook) of every ready-made request."""
    out = []
    for path in sorted(REQUESTS.glob("*.json")):
        slug, hook = path.name[: -len(".json")].rsplit(".", 1)
        out.append((slug, hook))
    return out


def golden_request(slug: str, hook: str) -> dict[str, Any]:
    return json.loads((REQUESTS / f"{slug}.{hook}.json").read_text())


def assert_card_shape(card: dict[str, Any]) -> None:
    """CDS Hooks 2.0 card rules."""
    assert isinstance(card["summary"], str) and 0 < len(card["summary"]) < 140, card["summary"]
    assert card["indicator"] in INDICATORS
    assert isinstance(card["source"], dict) and card["source"]["label"]
    assert "detail" not in card or isinstance(card["detail"], str)
    for reason in card.get("overrideReasons", []):
        assert reason["display"] and reason["code"] and reason["system"]
    suggestions = card.get("suggestions")
    if suggestions:
        assert isinstance(card.get("uuid"), str) and card["uuid"]
        assert card["selectionBehavior"] in ("at-most-one", "any")
        if card["selectionBehavior"] == "at-most-one":
            assert sum(1 for s in suggestions if s.get("isRecommended")) <= 1
        for s in suggestions:
            assert isinstance(s["label"], str) and s["label"]
            assert isinstance(s.get("uuid"), str)
            for action in s.get("actions", []):
                assert action["type"] in ("create", "update", "delete")
                assert isinstance(action["description"], str) and action["description"]
                if action["type"] in ("create", "update"):
                    assert isinstance(action["resource"], dict)
                    assert isinstance(action["resource"]["resourceType"], str)
                else:
                    ref = action["resourceId"]
                    assert isinstance(ref, str) and ref.count("/") == 1
    else:
        assert "selectionBehavior" not in card


def created_resources(card: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """Per suggestion, the resources its create actions hold."""
    return [
        [a["resource"] for a in s.get("actions", []) if a["type"] == "create"]
        for s in card.get("suggestions", [])
    ]
