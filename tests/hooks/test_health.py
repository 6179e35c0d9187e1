"""Liveness and readiness as a Kubernetes probe pair sees them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from auth.keys import JwksServer, new_ec_key
from support import isolated_settings

from cds_service.app import create_app
from cds_service.auth import jwks

from .helpers import START, app_for, client

pytestmark = pytest.mark.anyio


def app_trusting(tmp_path: Path, server: JwksServer) -> object:
    path = tmp_path / "clients.json"
    path.write_text(json.dumps([{"iss": "https://ehr.example.org", "name": "Example EHR",
                                 "jwks_url": server.url}]))  # fmt: skip
    settings = isolated_settings(
        auth=True, public_base_url="http://testserver", clients_file=str(path)
    )
    return create_app(settings, clock=lambda: START)


async def test_live_answers_without_looking_at_anything() -> None:
    async with client() as c:
        r = await c.get("/health/live")
    assert (r.status_code, r.json()) == (200, {"status": "live"})


async def test_ready_with_inline_keys_names_every_check() -> None:
    async with client(app_for()) as c:
        r = await c.get("/health/ready")
    assert r.status_code == 200
    assert r.json() == {
        "status": "ready",
        "checks": {"protocol": "ready", "clients": "ready", "jwks": "ready", "database": "ready"},
    }


async def test_not_ready_while_a_clients_jwks_is_unreachable_then_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jwks, "READY_RETRY_S", 0.0)
    with JwksServer(keys=[new_ec_key("k1")]) as server:
        server.status = 503
        app = app_trusting(tmp_path, server)
        async with client(app, signed=False) as c:  # type: ignore[arg-type]
            down = await c.get("/health/ready")
            server.status = 200
            up = await c.get("/health/ready")
            server.status = 503  # fetched once: a later outage does not make it unready
            still = await c.get("/health/ready")
            live = await c.get("/health/live")
    assert down.status_code == 503
    body = down.json()
    assert body["status"] == "not ready"
    assert body["checks"]["protocol"] == "ready"
    assert "Example EHR" in body["checks"]["jwks"] and "503" in body["checks"]["jwks"]
    assert body["reasons"] == [f"jwks: {body['checks']['jwks']}"]
    assert up.status_code == 200 and up.json()["status"] == "ready"
    assert still.status_code == 200
    assert live.status_code == 200


async def test_a_check_added_later_takes_part(tmp_path: Path) -> None:
    app = create_app(isolated_settings(auth=False), clock=lambda: START)
    state = {"reason": "queue not reachable"}

    async def queue() -> str | None:
        return state["reason"]

    app.state.readiness.add("queue", queue)
    async with client(app, signed=False) as c:
        not_ready = await c.get("/health/ready")
        state["reason"] = None  # type: ignore[assignment]
        ready = await c.get("/health/ready")
    assert not_ready.status_code == 503
    assert not_ready.json()["reasons"] == ["queue: queue not reachable"]
    assert ready.status_code == 200


async def test_a_failing_or_hanging_check_is_a_reason_not_an_error() -> None:
    from cds_service.readiness import Readiness

    readiness = Readiness(timeout_s=0.05)

    async def broken() -> str | None:
        raise RuntimeError("Quuxbottom")

    async def hangs() -> str | None:
        import asyncio

        await asyncio.sleep(5)
        return None

    readiness.add("broken", broken)
    readiness.add("hangs", hangs)
    outcomes = {o.name: o.reason for o in await readiness.run()}
    assert outcomes == {
        "broken": "the check failed (RuntimeError)",
        "hangs": "no answer within 0.05 s",
    }
