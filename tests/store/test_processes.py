"""The state layer across processes: workers share it, restarts keep it, SIGKILL loses no
acknowledged feedback. Real uvicorn processes on loopback, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path
from typing import Any

import httpx
from hooks.helpers import golden_request

from cds_service.settings import Settings
from cds_service.store import Store

from .service_process import ServiceProcess

PV = "/cds-services/b12-patient-view"
SLUG = "t2-pernicious-anemia-d51-0"
#: A patient-view answer with a treatment card and a card of another kind beside it.
TWO_KINDS = "s9-pregnancy"


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _settings(database_env: dict[str, str]) -> Settings:
    return Settings.from_env({**database_env, "CDS_AUTH": "off"})


def test_two_workers_accept_a_token_once_across_them(database_env: dict[str, str]) -> None:
    body = golden_request(SLUG, "patient-view")
    with ServiceProcess(database_env, workers=2) as service:
        workers = service.worker_pids()
        assert len(workers) == 2
        before = {pid: _cpu_ticks(pid) for pid in workers}

        def send(headers: dict[str, str]) -> int:
            # A connection of its own each time, so the kernel spreads them over the workers.
            with httpx.Client(base_url=service.base_url, timeout=30) as c:
                return c.post(PV, json=body, headers=headers).status_code

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            for _ in range(8):
                headers = service.signed(PV)
                statuses = sorted(pool.map(send, [headers] * 4))
                assert statuses == [200, 401, 401, 401], statuses
        used = [pid for pid in workers if _cpu_ticks(pid) > before[pid]]
        assert len(used) == 2, "both workers must have answered"


def _feedback(card: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "feedback": [{"card": card["uuid"], "outcomeTimestamp": "2026-12-01T10:05:31Z", **extra}]
    }


def test_a_restart_keeps_everything_and_sigkill_loses_no_acknowledged_feedback(
    database_env: dict[str, str],
) -> None:
    service = ServiceProcess(database_env)
    body = golden_request(TWO_KINDS, "patient-view")
    feedback_path = PV + "/feedback"
    with service:
        with httpx.Client(base_url=service.base_url, timeout=30) as c:
            body["hookInstance"] = "restart-1"
            cards = c.post(PV, json=body, headers=service.signed(PV)).json()["cards"]
            treatment = next(card for card in cards if card["extension"]["card"] == "treatment")
            accepted = _feedback(
                treatment,
                outcome="accepted",
                acceptedSuggestions=[{"id": treatment["suggestions"][0]["uuid"]}],
            )
            r = c.post(feedback_path, json=accepted, headers=service.signed(feedback_path))
            assert r.status_code == 200
            # Answered just before a graceful stop: its audit record is flushed at shutdown.
            body["hookInstance"] = "restart-2"
            assert c.post(PV, json=body, headers=service.signed(PV)).status_code == 200
        service.stop()

        service.start()
        with httpx.Client(base_url=service.base_url, timeout=30) as c:
            for hook_instance in ("restart-1", "restart-2"):
                found = c.get(
                    "/fhir/GuidanceResponse",
                    params={"request": hook_instance},
                    headers=service.operator(),
                ).json()
                assert found["total"] == 1, hook_instance
            figures = c.get("/analytics/feedback", headers=service.operator()).json()
            treatment_figures = next(e for e in figures["byKind"] if e["kind"] == "treatment")
            assert treatment_figures["shown"] == 2 and treatment_figures["accepted"] == 1

            other = next(card for card in cards if card["extension"]["card"] != "treatment")
            overridden = _feedback(
                other,
                outcome="overridden",
                overrideReason={"reason": {"code": "treated-elsewhere"}},
            )
            r = c.post(feedback_path, json=overridden, headers=service.signed(feedback_path))
            assert r.status_code == 200
        service.kill()  # right after the 200: no shutdown, no flush

    async def read() -> list[dict[str, Any]]:
        store = Store(_settings(database_env))
        try:
            return await store.feedback.stored(other["uuid"])
        finally:
            await store.database.dispose()

    (row,) = asyncio.run(read())
    assert row["outcome"] == "overridden" and row["override_reason_code"] == "treated-elsewhere"
    assert bool(row["card_known"])
