"""ObserveMiddleware: every observer sees each finished call, even when one before it fails."""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cds_service.middleware.observe import FinishedCall, ObserveMiddleware


def test_a_failing_observer_does_not_stop_the_next_one(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[FinishedCall] = []

    def broken(call: FinishedCall) -> None:
        raise RuntimeError("a metric could not be written")

    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"ok": "yes"}

    app.add_middleware(ObserveMiddleware, observers=(broken, seen.append))
    with caplog.at_level(logging.ERROR), TestClient(app) as client:
        assert client.get("/ping").status_code == 200
    assert [(c.route, c.status) for c in seen] == [("/ping", 200)]
    failures = [r for r in caplog.records if "observing a finished call failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is None
