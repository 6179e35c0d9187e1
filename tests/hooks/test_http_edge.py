"""The HTTP edge under the real server command: response headers, trailing slashes, clients that
disconnect mid-body, and a log that never holds a traceback (uvicorn's own lines included)."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import isolated_settings

from .helpers import START, client, golden_request

ROOT = Path(__file__).resolve().parents[2]
PV = "/cds-services/b12-patient-view"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _dockerfile_command() -> list[str]:
    """The Dockerfile's CMD: the command the service runs under in production."""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("CMD ["):
            return list(json.loads(line[len("CMD ") :]))
    raise AssertionError("Dockerfile has no CMD")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    command = _dockerfile_command()
    assert command[0] in ("uvicorn", "python")
    port = _free_port()
    args = [a if a != "0.0.0.0" else "127.0.0.1" for a in command[1:]]
    args[args.index("--port") + 1] = str(port)
    if command[0] == "uvicorn":
        args = ["-m", "uvicorn", *args]
    log = tmp_path_factory.mktemp("edge") / "service.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, *args],
            env={**os.environ, "CDS_AUTH": "off"},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    if httpx.get(base + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.05)
            yield base, log
        finally:
            process.terminate()
            process.wait(timeout=10)


def test_answers_with_patient_data_are_not_cached_or_sniffed_and_name_no_server(
    served: tuple[str, Path],
) -> None:
    base, _ = served
    body = golden_request("t2-pernicious-anemia-d51-0", "patient-view")
    for response in (
        httpx.post(base + PV, json=body, timeout=10),
        httpx.get(base + "/health", timeout=10),
        httpx.post(base + "/cds-services/nope", json=body, timeout=10),
    ):
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "server" not in response.headers


def test_a_post_with_a_trailing_slash_is_served_not_redirected(served: tuple[str, Path]) -> None:
    base, _ = served
    body = golden_request("t2-pernicious-anemia-d51-0", "patient-view")
    r = httpx.post(base + PV + "/", json=body, timeout=10, follow_redirects=False)
    assert r.status_code == 200, r.text
    assert r.json()["cards"]
    assert httpx.get(base + "/cds-services/", timeout=10).status_code == 200


def _raw(base: str, data: bytes) -> None:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(data)
        time.sleep(0.2)


def test_a_client_that_disconnects_mid_body_is_no_error_and_nothing_logs_a_traceback(
    served: tuple[str, Path],
) -> None:
    base, log = served
    body = json.dumps(golden_request("t2-pernicious-anemia-d51-0", "patient-view")).encode()
    head = (
        f"POST {PV} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body) + 10_000}\r\n\r\n"
    ).encode()
    _raw(base, head + body[: len(body) // 2])  # then the socket closes
    _raw(base, b"NOT HTTP AT ALL\r\n\r\n")  # uvicorn's own error path
    apply_head = (
        b"POST /fhir/PlanDefinition/b12-deficiency-standard/$apply HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"
    )
    _raw(base, apply_head)
    assert httpx.get(base + "/health", timeout=10).status_code == 200  # still serving
    time.sleep(0.3)
    text = log.read_text()
    assert "client disconnected before sending the whole body" in text
    assert "Traceback" not in text
    assert "unexpected error" not in text
    assert "ERROR" not in text


@pytest.mark.anyio
async def test_an_unexpected_error_is_a_json_500_logged_by_place_without_a_traceback(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cds_service.engine import Engine

    def broken(self: Engine, plan: Any, **kwargs: Any) -> Any:
        raise RuntimeError("Smith, born 1950-02-03")

    monkeypatch.setattr(Engine, "medication_requests", broken)
    caplog.set_level(logging.INFO)
    async with client() as c:
        r = await c.post(PV, json=golden_request("t2-pernicious-anemia-d51-0", "patient-view"))
    assert r.status_code == 500
    assert r.json() == {"error": {"status": 500, "message": "internal error"}}
    assert r.headers["cache-control"] == "no-store"
    logged = [rec for rec in caplog.records if "unexpected error" in rec.getMessage()]
    assert logged and "RuntimeError at" in logged[0].getMessage()
    assert all(rec.exc_info is None for rec in caplog.records)
    assert "Smith" not in caplog.text


@pytest.mark.anyio
async def test_a_fault_in_the_middleware_itself_is_a_json_500_never_re_raised(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cds_service.app import create_app
    from cds_service.middleware import request_id

    def broken(given: str | None) -> str:
        raise ValueError(f"cannot use {given}")

    app = create_app(isolated_settings(auth=False), clock=lambda: START)
    monkeypatch.setattr(request_id, "request_id_of", broken)
    caplog.set_level(logging.INFO)
    # The transport raises what the app raises: answered here means nothing reached a server.
    async with client(app, signed=False) as c:
        r = await c.get("/health", headers={"X-Request-ID": "Smith-1950-02-03"})
    assert r.status_code == 500
    assert r.json() == {"error": {"status": 500, "message": "internal error"}}
    assert r.headers["content-type"] == "application/json"
    logged = [rec for rec in caplog.records if "unexpected error" in rec.getMessage()]
    assert len(logged) == 1
    assert "ValueError at " in logged[0].getMessage()
    assert "request_id.py" in logged[0].getMessage()
    assert all(rec.exc_info is None for rec in caplog.records)
    assert "Smith" not in caplog.text
    # One place answers: no exception handler of the app is left to Starlette's error middleware.
    assert Exception not in app.exception_handlers
