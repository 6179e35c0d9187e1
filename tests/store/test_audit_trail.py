"""The audit trail, feedback and analytics through the service, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hooks.helpers import START, golden_request
from plan_operation.helpers import parameters, patient_id
from sqlalchemy import select
from support import assert_valid_fhir, golden_bundle

from cds_service.app import create_app
from cds_service.fhir.guidance_response import ENDPOINT_EXTENSION, PROFILE
from cds_service.store.tables import feedback as feedback_table

pytestmark = pytest.mark.anyio
PV = "/cds-services/b12-patient-view"
OPERATOR = "operator-" + "x" * 40
AS_OPERATOR = {"Authorization": f"Bearer {OPERATOR}"}
SLUG = "t2-pernicious-anemia-d51-0"
#: A patient-view answer with a treatment card and a card of another kind beside it.
TWO_KINDS = "s9-pregnancy"


@pytest.fixture
def app(store_settings: Any) -> Any:
    return create_app(store_settings(auth=False, operator_token=OPERATOR), clock=lambda: START)


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def _answer(
    c: httpx.AsyncClient, app: Any, hook_instance: str, slug: str = SLUG
) -> list[dict[str, Any]]:
    body = golden_request(slug, "patient-view")
    body["hookInstance"] = hook_instance
    body["context"]["encounterId"] = "enc-7"
    r = await c.post(PV, json=body)
    assert r.status_code == 200
    await app.state.cds.store.audit.flush()
    return list(r.json()["cards"])


def _params(resource: dict[str, Any]) -> list[dict[str, Any]]:
    (output,) = resource["contained"]
    return list(output["parameter"])


async def test_every_answer_is_a_guidance_response(app: Any) -> None:
    async with _client(app) as c:
        cards = await _answer(c, app, "hook-1")
        r = await c.get("/fhir/GuidanceResponse", params={"request": "hook-1"}, headers=AS_OPERATOR)
        assert r.status_code == 200 and r.headers["content-type"].startswith(
            "application/fhir+json"
        )
        bundle = r.json()
        assert_valid_fhir(bundle)
        assert bundle["type"] == "searchset" and bundle["total"] == 1
        resource = bundle["entry"][0]["resource"]
        read = await c.get(f"/fhir/GuidanceResponse/{resource['id']}", headers=AS_OPERATOR)
        assert read.status_code == 200 and read.json() == resource
    assert_valid_fhir(resource)
    assert resource["meta"]["profile"] == [PROFILE]
    assert resource["requestIdentifier"]["value"] == "hook-1"
    assert resource["moduleUri"] == "http://testserver/cds-services/b12-patient-view"
    assert resource["extension"][0] == {
        "url": ENDPOINT_EXTENSION,
        "valueUri": resource["moduleUri"],
    }
    assert resource["subject"] == {"reference": "Patient/b12gp-002"}
    assert resource["encounter"] == {"reference": "Encounter/enc-7"}
    assert resource["extension"][1]["valueReference"] == {"reference": "Practitioner/example"}
    assert resource["status"] == "success" and resource["occurrenceDateTime"].endswith("Z")
    params = _params(resource)
    named = {p["name"]: p for p in params if "part" not in p}
    assert named["protocolVersion"]["valueString"] and named["profile"]["valueString"] == "standard"
    assert named["status"]["valueCode"] == "confirmed"
    rules = {p["valueString"] for p in params if p["name"] == "rule"}
    assert set(cards[0]["extension"]["rules"]) <= rules
    # Every card with its kind and suggestion uuids.
    audited = {
        next(x["valueString"] for x in p["part"] if x["name"] == "uuid"): p["part"]
        for p in params
        if p["name"] == "card"
    }
    assert set(audited) == {card["uuid"] for card in cards}
    # The ids the audit trail is keyed by are minted in time order (cds_service.ids).
    assert {uuid.UUID(i).version for i in [resource["id"], *audited]} == {7}
    for card in cards:
        part = audited[card["uuid"]]
        assert {"name": "kind", "valueString": card["extension"]["card"]} in part
        suggestions = {x["valueString"] for x in part if x["name"] == "suggestion"}
        assert suggestions == {s["uuid"] for s in card.get("suggestions", [])}
    # The evidence: the B12 result read, with its value, and the schedule proposed.
    evidence = [p["part"] for p in params if p["name"] == "evidence"]
    texts = [x["valueString"] for part in evidence for x in part if x["name"] == "value"]
    assert any("B12" in t or "D51" in t or "anaemia" in t.lower() for t in texts), texts
    refs = {r["reference"] for r in resource["reasonReference"]}
    assert all("/" in ref for ref in refs) and refs
    schedules = [p for p in params if p["name"] == "schedule"]
    assert any({"name": "recommended", "valueBoolean": True} in s["part"] for s in schedules)
    # Never the prefetch itself.
    text = json.dumps(resource)
    assert "birthDate" not in text and '"resourceType": "Observation"' not in text


async def test_an_answer_the_service_could_not_give_is_audited(app: Any) -> None:
    """A 412 (required data neither in the prefetch nor fetchable) is an answer too: audited as
    `data-required` with the keys and reasons the 412 names, and nothing of the record."""
    body = golden_request(SLUG, "patient-view")
    body["hookInstance"] = "hook-412"
    body["context"]["encounterId"] = "enc-7"
    del body["prefetch"]["observations"], body["prefetch"]["conditions"]
    async with _client(app) as c:
        r = await c.post(PV, json=body)
        assert r.status_code == 412
        answered = r.json()["error"]
        await app.state.cds.store.audit.flush()
        found = await c.get(
            "/fhir/GuidanceResponse", params={"request": "hook-412"}, headers=AS_OPERATOR
        )
    assert answered["missing"] == ["conditions", "observations"]
    (entry,) = found.json()["entry"]
    resource = entry["resource"]
    assert_valid_fhir(resource)
    assert resource["status"] == "data-required"
    assert resource["subject"] == {"reference": "Patient/b12gp-002"}
    assert resource["encounter"] == {"reference": "Encounter/enc-7"}
    assert resource["dataRequirement"] == [{"type": "Condition"}, {"type": "Observation"}]
    params = _params(resource)
    named = {p["name"]: p for p in params if "part" not in p}
    assert named["httpStatus"]["valueInteger"] == 412
    assert named["protocolVersion"]["valueString"] and named["profile"]["valueString"] == "standard"
    unavailable = {
        p["part"][0]["valueString"]: p["part"][1]["valueString"]
        for p in params
        if p["name"] == "unavailable"
    }
    assert unavailable == answered["reasons"]
    # No cards, no evidence, no resource of the record: only who was asked about.
    assert not any(p["name"] in ("card", "evidence", "rule") for p in params)
    assert "reasonReference" not in resource
    patient = body["prefetch"]["patient"]
    assert json.dumps(patient["name"]) not in json.dumps(resource)


async def test_search_by_subject_and_date_is_paginated(app: Any) -> None:
    async with _client(app) as c:
        for i in range(3):
            await _answer(c, app, f"page-{i}")
        today = datetime.now(UTC).date()
        query = {"subject": "Patient/b12gp-002", "date": f"ge{today.isoformat()}", "_count": "2"}
        first = (await c.get("/fhir/GuidanceResponse", params=query, headers=AS_OPERATOR)).json()
        assert first["total"] == 3 and len(first["entry"]) == 2
        next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
        second = (await c.get(next_url, headers=AS_OPERATOR)).json()
        assert len(second["entry"]) == 1
        assert not any(link["relation"] == "next" for link in second["link"])
        seen = {
            e["resource"]["requestIdentifier"]["value"] for e in first["entry"] + second["entry"]
        }
        assert seen == {"page-0", "page-1", "page-2"}
        tomorrow = (today + timedelta(days=1)).isoformat()
        later = await c.get(
            "/fhir/GuidanceResponse", params={"date": f"ge{tomorrow}"}, headers=AS_OPERATOR
        )
        assert later.json()["total"] == 0
        other = await c.get(
            "/fhir/GuidanceResponse", params={"patient": "nobody"}, headers=AS_OPERATOR
        )
        assert other.json()["total"] == 0
        bad = await c.get("/fhir/GuidanceResponse", params={"name": "x"}, headers=AS_OPERATOR)
        assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"


async def test_the_audit_trail_needs_the_operator_credential(app: Any) -> None:
    async with _client(app) as c:
        await _answer(c, app, "secret-1")
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": OPERATOR}):
            for path in (
                "/fhir/GuidanceResponse",
                "/fhir/GuidanceResponse/x",
                "/analytics/feedback",
            ):
                r = await c.get(path, headers=headers)
                assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


async def test_without_an_operator_token_nobody_reads_the_audit_trail(store_settings: Any) -> None:
    app = create_app(store_settings(auth=False), clock=lambda: START)
    async with _client(app) as c:
        r = await c.get("/fhir/GuidanceResponse", headers={"Authorization": "Bearer "})
        assert r.status_code == 401


async def test_apply_plans_are_audited(app: Any) -> None:
    bundle = golden_bundle(SLUG)
    pid = patient_id(bundle)
    async with _client(app) as c:
        r = await c.post(
            "/fhir/PlanDefinition/b12-deficiency-standard/$apply",
            json=parameters(f"Patient/{pid}", bundle, practitioner="Practitioner/dr-1"),
            headers={"X-Request-ID": "apply-42"},
        )
        assert r.status_code == 200
        care_plan = r.json()
        await app.state.cds.store.audit.flush()
        found = await c.get(
            "/fhir/GuidanceResponse", params={"request": "apply-42"}, headers=AS_OPERATOR
        )
    (entry,) = found.json()["entry"]
    resource = entry["resource"]
    assert_valid_fhir(resource)
    assert resource["subject"] == {"reference": f"Patient/{pid}"}
    assert resource["moduleUri"].endswith("/fhir/PlanDefinition/b12-deficiency-standard/$apply")
    (plan_part,) = [p["part"] for p in _params(resource) if p["name"] == "carePlan"]
    assert {"name": "id", "valueString": care_plan["id"]} in plan_part


async def _apply_412(app: Any, request_id: str, plan: str) -> tuple[dict[str, Any], Any]:
    """A $apply without `data` answered 412, and its audit record."""
    async with _client(app) as c:
        r = await c.post(
            f"/fhir/PlanDefinition/{plan}/$apply",
            json=parameters("Patient/p-412", practitioner="Practitioner/dr-1"),
            headers={"X-Request-ID": request_id},
        )
        assert r.status_code == 412
        await app.state.cds.store.audit.flush()
        found = await c.get(
            "/fhir/GuidanceResponse", params={"request": request_id}, headers=AS_OPERATOR
        )
    (entry,) = found.json()["entry"]
    resource = entry["resource"]
    assert_valid_fhir(resource)
    assert resource["status"] == "data-required"
    assert resource["subject"] == {"reference": "Patient/p-412"}
    assert resource["moduleUri"].endswith(f"/fhir/PlanDefinition/{plan}/$apply")
    return r.json(), resource


def _unavailable(resource: dict[str, Any]) -> dict[str, str]:
    return {
        p["part"][0]["valueString"]: p["part"][1]["valueString"]
        for p in _params(resource)
        if p["name"] == "unavailable"
    }


async def test_an_apply_answered_412_is_audited(app: Any) -> None:
    """No `data` and no FHIR server to read the record from: the whole record is what it
    lacked, under the profile of the PlanDefinition asked for."""
    outcome, resource = await _apply_412(app, "apply-412", "b12-deficiency-fda-label")
    named = {p["name"]: p for p in _params(resource) if "part" not in p}
    assert named["httpStatus"]["valueInteger"] == 412
    assert named["profile"]["valueString"] == "fda-label"
    (issue,) = outcome["issue"]
    assert _unavailable(resource) == {"record": issue["diagnostics"]}
    assert "dataRequirement" not in resource and "reasonReference" not in resource


async def test_an_apply_whose_fhir_server_fails_is_audited_with_the_keys(
    store_settings: Any,
) -> None:
    """The FHIR server does not answer: the audit names each required key and its reason, and
    the resource types it lacked."""
    settings = store_settings(
        auth=False, operator_token=OPERATOR, fhir_base_url="http://127.0.0.1:1/fhir"
    )
    app = create_app(settings, clock=lambda: START)
    async with app.router.lifespan_context(app):  # its FHIR client is closed with it
        _outcome, resource = await _apply_412(app, "apply-412-keys", "b12-deficiency-standard")
    unavailable = _unavailable(resource)
    assert {"patient", "conditions", "observations"} <= set(unavailable)
    assert {"type": "Patient"} in resource["dataRequirement"]


async def test_feedback_is_stored_once_joined_and_counted(app: Any) -> None:
    async with _client(app) as c:
        cards = await _answer(c, app, "fb-1", TWO_KINDS)
        treatment = next(card for card in cards if card["extension"]["card"] == "treatment")
        other = next(card for card in cards if card["extension"]["card"] != "treatment")
        feedback = {
            "feedback": [
                {
                    "card": treatment["uuid"],
                    "outcome": "accepted",
                    "acceptedSuggestions": [{"id": treatment["suggestions"][0]["uuid"]}],
                    "outcomeTimestamp": "2026-12-01T10:05:31Z",
                },
                {
                    "card": other["uuid"],
                    "outcome": "overridden",
                    "overrideReason": {
                        "reason": {"system": "urn:x", "code": "clinical-judgement"},
                        "userComment": "free text that is never stored",
                    },
                    "outcomeTimestamp": "2026-12-01T10:06:00Z",
                },
                {
                    "card": "not-ours",
                    "outcome": "overridden",
                    "outcomeTimestamp": "2026-12-01T10:07Z",
                },
            ]
        }
        for _ in range(2):  # sent twice: stored once
            r = await c.post(PV + "/feedback", json=feedback)
            assert r.status_code == 200 and r.json() == {}
        store = app.state.cds.store.feedback
        assert len(await store.stored(treatment["uuid"])) == 1
        (unknown,) = await store.stored("not-ours")
        assert unknown["card_known"] is False or unknown["card_known"] == 0
        figures = (await c.get("/analytics/feedback", headers=AS_OPERATOR)).json()
    by_kind = {e["kind"]: e for e in figures["byKind"]}
    assert by_kind["treatment"]["shown"] == 1 and by_kind["treatment"]["accepted"] == 1
    assert by_kind["treatment"]["acceptanceRate"] == 1.0
    kind = other["extension"]["card"]
    assert by_kind[kind]["overridden"] == 1
    assert by_kind[kind]["overrideReasons"] == {"clinical-judgement": 1}
    by_rule = {e["rule"]: e for e in figures["byRule"]}
    for rule in treatment["extension"]["rules"]:
        assert by_rule[rule]["shown"] >= 1 and by_rule[rule]["accepted"] == 1
    assert figures["feedbackOnUnknownCards"] == 1
    assert "free text" not in str(await store.stored(other["uuid"]))


async def test_feedback_reaching_another_worker_before_the_audit_row_is_joined_later(
    store_settings: Any,
) -> None:
    """Worker A answers and its audit record waits in A's queue; the feedback on it reaches
    worker B first, which cannot see the card yet. Once A has written it, B's reads join them."""
    settings = store_settings(auth=False, operator_token=OPERATOR)
    worker_a = create_app(settings, clock=lambda: START)
    worker_b = create_app(settings, clock=lambda: START)
    queue_a = worker_a.state.cds.store.audit.queue
    gate = asyncio.Event()
    write = queue_a._write

    async def held(batch: Any) -> None:
        await gate.wait()
        await write(batch)

    queue_a._write = held
    body = golden_request(SLUG, "patient-view")
    async with _client(worker_a) as a, _client(worker_b) as b:
        r = await a.post(PV, json=body)
        assert r.status_code == 200
        treatment = next(c for c in r.json()["cards"] if c["extension"]["card"] == "treatment")
        suggestion = treatment["suggestions"][0]["uuid"]
        item = {
            "card": treatment["uuid"],
            "outcome": "accepted",
            "acceptedSuggestions": [{"id": suggestion}],
            "outcomeTimestamp": "2026-12-01T10:05:31Z",
        }
        r = await b.post(PV + "/feedback", json={"feedback": [item]})
        assert r.status_code == 200
        feedback_b = worker_b.state.cds.store.feedback
        async with worker_b.state.cds.store.database().connect() as connection:
            (row,) = await connection.execute(select(feedback_table))
        assert not row.card_known and json.loads(row.unknown_suggestions) == [suggestion]
        gate.set()
        await worker_a.state.cds.store.audit.flush()
        figures = (await b.get("/analytics/feedback", headers=AS_OPERATOR)).json()
        (stored,) = await feedback_b.stored(treatment["uuid"])
    assert figures["feedbackOnUnknownCards"] == 0
    by_kind = {e["kind"]: e for e in figures["byKind"]}
    assert by_kind["treatment"]["accepted"] == 1
    assert stored["card_known"] and json.loads(stored["unknown_suggestions"]) == []
    await worker_a.state.cds.store.close()
    await worker_b.state.cds.store.close()


async def test_analytics_period(app: Any) -> None:
    async with _client(app) as c:
        await _answer(c, app, "period-1")
        old = await c.get(
            "/analytics/feedback",
            params={"start": "2020-01-01", "end": "2020-01-31"},
            headers=AS_OPERATOR,
        )
        assert old.status_code == 200
        assert (
            old.json()["byKind"] == [] and old.json()["period"]["start"] == "2020-01-01T00:00:00Z"
        )
        bad = await c.get("/analytics/feedback", params={"start": "soon"}, headers=AS_OPERATOR)
        assert bad.status_code == 400


async def test_purge_applies_the_retention_period(app: Any) -> None:
    async with _client(app) as c:
        cards = await _answer(c, app, "purge-1")
        await c.post(
            PV + "/feedback",
            json={
                "feedback": [
                    {"card": cards[0]["uuid"], "outcome": "overridden", "outcomeTimestamp": "t"}
                ]
            },
        )
        store = app.state.cds.store
        kept = await store.purge(datetime.now(UTC))
        assert kept["guidanceResponses"] == 0 and kept["feedback"] == 0
        gone = await store.purge(datetime.now(UTC) + store.retention + timedelta(seconds=1))
        assert (
            gone["guidanceResponses"] == 1 and gone["feedback"] == 1 and gone["cards"] == len(cards)
        )
        r = await c.get("/fhir/GuidanceResponse", headers=AS_OPERATOR)
        assert r.json()["total"] == 0


async def test_readiness_includes_the_database(app: Any) -> None:
    async with _client(app) as c:
        r = await c.get("/health/ready")
    assert r.status_code == 200, r.text
    assert "database" in r.json()["checks"]


async def test_an_unreachable_database_is_not_ready() -> None:
    from cds_service.settings import Settings
    from cds_service.store import Store

    store = Store(Settings(auth=False, database_url="postgresql://x:pw@127.0.0.1:1/none"))
    reason = await store.readiness()
    assert reason == "the database (CDS_DATABASE_URL) does not answer"
