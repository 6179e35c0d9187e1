"""An untreated deficiency is raised once per hook instance on order hooks, whichever worker
answers: through HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hooks.helpers import START, golden_request

from cds_service.app import create_app
from cds_service.store import Store
from cds_service.store.raised_cards import RAISED_TTL_S, RaisedCards

pytestmark = pytest.mark.anyio
SLUG = "t2-pernicious-anemia-d51-0"  # confirmed, untreated
OS = "/cds-services/b12-order-select"
COMPACT = "untreated-deficiency"


def _order_select(hook_instance: str, *drafts: dict[str, Any]) -> dict[str, Any]:
    """The clinician's order list as order-select sends it, every draft selected."""
    body = copy.deepcopy(golden_request(SLUG, "patient-view"))
    body["hook"] = "order-select"
    body["hookInstance"] = hook_instance
    body["context"]["draftOrders"] = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": d} for d in drafts],
    }
    body["context"]["selections"] = [f"MedicationRequest/{d['id']}" for d in drafts]
    return body


def _draft(patient: str, draft_id: str, text: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": draft_id,
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {"text": text},
        "subject": {"reference": f"Patient/{patient}"},
    }


PATIENT = golden_request(SLUG, "patient-view")["context"]["patientId"]
FOLIC = _draft(PATIENT, "d-folic", "folic acid 5 mg tablet")
STATIN = _draft(PATIENT, "d-statin", "atorvastatin 20 mg tablet")


def _app(store_settings: Any) -> Any:
    return create_app(store_settings(auth=False), clock=lambda: START)


async def _kinds(app: Any, body: dict[str, Any]) -> list[str]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        r = await c.post(OS, json=body)
    assert r.status_code == 200, r.text
    return [card["extension"]["card"] for card in r.json()["cards"]]


async def test_the_compact_card_is_raised_once_per_hook_instance(store_settings: Any) -> None:
    app = _app(store_settings)
    first = await _kinds(app, _order_select("hi-1", FOLIC))
    assert COMPACT in first and "safety-S3" in first
    # The clinician picks another order in the same session: the reminder is not repeated, the
    # finding about the orders (folic acid without B12, S3) still is.
    again = await _kinds(app, _order_select("hi-1", FOLIC, STATIN))
    assert COMPACT not in again and "safety-S3" in again
    # Another ordering session (a new hook instance): raised again.
    assert COMPACT in await _kinds(app, _order_select("hi-2", FOLIC))


async def test_every_worker_sees_what_another_raised(store_settings: Any) -> None:
    settings = store_settings(auth=False)
    one, two = (create_app(settings, clock=lambda: START) for _ in range(2))
    assert COMPACT in await _kinds(one, _order_select("hi-shared", FOLIC))
    assert COMPACT not in await _kinds(two, _order_select("hi-shared", FOLIC))


async def test_an_unrelated_order_does_not_use_up_the_reminder(store_settings: Any) -> None:
    app = _app(store_settings)
    assert await _kinds(app, _order_select("hi-3", STATIN)) == []
    assert COMPACT in await _kinds(app, _order_select("hi-3", STATIN, FOLIC))


async def test_rows_expire_and_are_purged(store_settings: Any) -> None:
    store = Store(store_settings(auth=False))
    store.open()
    try:
        now = [time.time()]
        raised = RaisedCards(store.database, clock=lambda: now[0])
        assert await raised.first_time("hi-4", COMPACT)
        assert not await raised.first_time("hi-4", COMPACT)
        assert await raised.first_time("hi-4", "another-kind")
        now[0] += RAISED_TTL_S + 1  # the hook instance is long over
        assert await raised.first_time("hi-4", COMPACT)
        # That claim also purged the expired "another-kind" row; the purge deletes the rest.
        assert await raised.purge(now[0]) == 0
        assert await raised.purge(now[0] + RAISED_TTL_S + 1) == 1
        # `b12-cds db purge` deletes them too.
        assert await raised.first_time("hi-5", COMPACT)
        later = datetime.fromtimestamp(now[0] + RAISED_TTL_S + 1, UTC)
        assert (await store.purge(later))["raisedCards"] == 1
    finally:
        await store.database.dispose()
