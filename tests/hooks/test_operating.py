"""What the on-call engineer reads: the metrics after known calls and the JSON request log."""

from __future__ import annotations

import copy
import io
import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fhirserver import FhirTestServer
from prometheus_client.parser import text_string_to_metric_families
from support import isolated_settings

from cds_service import logs
from cds_service.app import create_app
from cds_service.fetch import Allowlist, FhirFetcher
from cds_service.metrics import cause_of, refusal_of
from cds_service.settings import Settings
from cds_service.store.database import SQLITE_FILE

from .helpers import START, app_for, client, golden_request

pytestmark = pytest.mark.anyio
PV = "/cds-services/b12-patient-view"
FEEDBACK = PV + "/feedback"
#: Planted in the requests: none of it may reach a log line.
PHI = ("Quuxbottom", "Zebediah", "1931-02-03", "MRN-778899", "tel-555-0199")
SECRET_TOKEN = "fhir-access-token-never-logged"


def planted(body: dict[str, Any]) -> dict[str, Any]:
    """The request with a name, birth date, MRN and phone number on its Patient."""
    body = copy.deepcopy(body)
    patient = body["prefetch"]["patient"]
    patient["name"] = [{"family": PHI[0], "given": [PHI[1]]}]
    patient["birthDate"] = PHI[2]
    patient["identifier"] = [{"system": "urn:mrn", "value": PHI[3]}]
    patient["telecom"] = [{"system": "phone", "value": PHI[4]}]
    body["fhirAuthorization"] = {
        "access_token": SECRET_TOKEN,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "b12-cds",
    }
    body["fhirServer"] = "https://ehr.example.org/fhir"
    return body


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(metrics: dict[Any, float], name: str, **labels: str) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


class Captured:
    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()


@pytest.fixture
def log() -> Iterator[Captured]:
    """Every line the service logs during the test, in the JSON format."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield Captured(stream)
    root.removeHandler(handler)
    root.setLevel(level)


def request_lines(lines: list[str]) -> list[dict[str, Any]]:
    parsed = [json.loads(line) for line in lines]
    return [p for p in parsed if p["logger"] == "cds_service.request"]


async def test_metrics_count_a_known_sequence_of_calls() -> None:
    app = app_for()
    body = golden_request("t6-unspecified-low-b12", "patient-view")
    no_patient = copy.deepcopy(body)
    del no_patient["prefetch"]["patient"]
    no_patient.pop("fhirServer", None)
    no_patient.pop("fhirAuthorization", None)
    async with client(app) as c:
        before = samples((await c.get("/metrics")).text)
        ok = [await c.post(PV, json=body) for _ in range(2)]
        missing = await c.post(PV, json=no_patient)
        bad = await c.post(PV, json={"hook": "patient-view"})
        card = ok[0].json()["cards"][0]
        fed = await c.post(
            FEEDBACK,
            json={
                "feedback": [
                    {
                        "card": card["uuid"],
                        "outcome": "overridden",
                        "outcomeTimestamp": "2026-12-01T10:00:00Z",
                    }
                ]
            },
        )
    async with client(app, signed=False) as c:
        refused = await c.post(PV, json=body)
        after_text = (await c.get("/metrics")).text
    assert [r.status_code for r in (*ok, missing, bad, fed, refused)] == [
        200, 200, 412, 400, 200, 401,
    ]  # fmt: skip
    after = samples(after_text)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = "/cds-services/{service_id}"
    counted = "cds_http_requests_total"
    assert delta(counted, route=route, method="POST", status="200") == 2
    assert delta(counted, route=route, method="POST", status="412") == 1
    assert delta(counted, route=route, method="POST", status="400") == 1
    assert delta(counted, route=route, method="POST", status="401") == 1
    feedback_route = route + "/feedback"
    assert delta(counted, route=feedback_route, method="POST", status="200") == 1
    assert delta("cds_feedback_total", service="b12-patient-view", outcome="overridden") == 1
    assert delta("cds_jwt_refusals_total", reason="missing") == 1
    assert delta("cds_prefetch_unavailable_total", key="patient", cause="no_fhir_server") == 1
    # Each rule fired once per card of each of the two answers.
    rules = ok[0].json()["cards"][0]["extension"]["rules"]
    kind = ok[0].json()["cards"][0]["extension"]["card"]
    assert rules
    for rule in rules:
        assert delta("cds_cards_total", service="b12-patient-view", kind=kind, rule=rule) == 2, rule
    histogram = "cds_http_request_duration_seconds_count"
    assert delta(histogram, route=route, service="b12-patient-view") == 5
    assert 'le="0.005"' in after_text


async def test_no_label_carries_what_the_caller_sent() -> None:
    app = app_for()
    async with client(app) as c:
        await c.post("/cds-services/Quuxbottom-1931", json={})
        await c.get("/no/such/Zebediah")
        await c.get("/fhir/PlanDefinition/MRN-778899")
        text = (await c.get("/metrics")).text
    for value_ in ("Quuxbottom", "Zebediah", "MRN-778899"):
        assert value_ not in text
    assert 'route="unmatched"' in text


async def test_fetch_metrics_name_the_query_and_its_outcome(fhir_server: FhirTestServer) -> None:
    fetcher = FhirFetcher(Allowlist(allow_loopback=True), timeout=0.5, deadline=1.0)
    app = create_app(Settings(auth=False), fetcher=fetcher, clock=lambda: START)
    body = golden_request("t6-unspecified-low-b12", "patient-view")
    body["prefetch"] = {}
    body["fhirServer"] = fhir_server.base_url
    body["fhirAuthorization"] = {
        "access_token": fhir_server.token,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "b12-cds",
    }
    fhir_server.set_mode("500")
    try:
        async with client(app, signed=False) as c:
            assert (await c.post(PV, json=body)).status_code == 412
            text = (await c.get("/metrics")).text
    finally:
        await fetcher.aclose()
    metrics = samples(text)
    assert value(metrics, "cds_fhir_fetch_queries_total", key="patient", outcome="http_status") == 1
    assert value(metrics, "cds_fhir_fetch_query_duration_seconds_count", key="patient") == 1
    assert value(metrics, "cds_prefetch_unavailable_total", key="patient", cause="http_status") == 1


def test_causes_and_refusals_have_names() -> None:
    assert cause_of("timed out after 2.0 s") == "timeout"
    assert cause_of("FHIR server answered 503") == "http_status"
    assert cause_of("not in prefetch; no fhirServer given") == "no_fhir_server"
    assert refusal_of("token expired (client 'epic')") == "expired"
    assert refusal_of("token jti was already used (client 'epic')") == "replayed"
    assert refusal_of("token signature invalid (client 'epic')") == "bad_signature"


async def test_metrics_can_be_switched_off() -> None:
    app = create_app(Settings(auth=False, metrics=False), clock=lambda: START)
    async with client(app, signed=False) as c:
        assert (await c.get("/metrics")).status_code == 404


async def test_the_request_log_of_a_200_a_401_and_a_412_is_json_without_phi(
    log: Captured,
) -> None:
    body = planted(golden_request("t6-unspecified-low-b12", "patient-view"))
    no_observations = copy.deepcopy(body)
    del no_observations["prefetch"]["observations"]
    no_observations.pop("fhirServer")
    no_observations.pop("fhirAuthorization")
    app = app_for()
    async with client(app) as c:
        ok = await c.post(PV, json=body, headers={"X-Request-ID": "ehr-call-200"})
        missing = await c.post(PV, json=no_observations, headers={"X-Request-ID": "ehr-call-412"})
    async with client(app, signed=False) as c:
        refused = await c.post(
            PV,
            json=body,
            headers={"Authorization": "Bearer not.a-valid.jwt", "X-Request-ID": "ehr-call-401"},
        )
    assert (ok.status_code, missing.status_code, refused.status_code) == (200, 412, 401)
    logged = "\n".join(log.lines())
    for value_ in (*PHI, SECRET_TOKEN, "not.a-valid.jwt"):
        assert value_ not in logged, value_
    by_id = {line.get("request_id"): line for line in request_lines(log.lines())}
    assert {"ehr-call-200", "ehr-call-412", "ehr-call-401"} <= set(by_id)

    line = by_id["ehr-call-200"]
    assert line["status"] == 200 and line["level"] == "info"
    assert line["service"] == "b12-patient-view"
    assert line["hook_instance"] == body["hookInstance"]
    assert line["cards"] == len(ok.json()["cards"]) > 0
    assert set(line["rules"]) == {r for c in ok.json()["cards"] for r in c["extension"]["rules"]}
    assert line["client_iss"] == "https://ehr.example.org"
    assert line["route"] == "/cds-services/{service_id}"
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] > 0
    assert line["time"].endswith("Z")

    line = by_id["ehr-call-412"]
    assert line["status"] == 412 and line["level"] == "warning"
    assert line["unavailable"] == ["observations"]
    assert "observations: not in prefetch" in line["reason"]

    line = by_id["ehr-call-401"]
    assert line["status"] == 401
    assert line["reason"] == "authentication required"
    assert line["auth_refusal"]
    assert "client_iss" not in line


async def test_a_long_hook_instance_is_capped_in_the_log(log: Captured) -> None:
    body = golden_request("t6-unspecified-low-b12", "patient-view")
    body["hookInstance"] = "h" * 250
    async with client() as c:
        assert (await c.post(PV, json=body)).status_code == 200
    lines = [line for line in request_lines(log.lines()) if line.get("hook_instance")]
    assert lines and len(lines[-1]["hook_instance"]) <= 131


def test_text_format_is_one_readable_line() -> None:
    record = logging.LogRecord("cds_service.request", logging.INFO, "", 0, "request", None, None)
    record.fields = {"status": 200, "rules": ["D2"]}
    line = logs.TextFormatter().format(record)
    assert 'INFO cds_service.request request status=200 rules=["D2"]' in line
    assert "\n" not in line


def test_an_exception_is_logged_by_type_only() -> None:
    try:
        raise ValueError("Quuxbottom 1931-02-03")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, "", 0, "failed", None, sys.exc_info())
    line = json.loads(logs.JsonFormatter().format(record))
    assert line["exception"] == "ValueError"
    assert "Quuxbottom" not in json.dumps(line)


async def test_the_request_id_is_on_every_line_of_the_call(log: Captured) -> None:
    body = golden_request("t6-unspecified-low-b12", "patient-view")
    body["prefetch"]["observations"]["entry"][0]["resource"]["valueQuantity"] = "not a quantity"
    async with client() as c:
        r = await c.post(PV, json=body, headers={"X-Request-ID": "trace-me"})
    assert r.status_code in (200, 400)
    mine = [json.loads(line) for line in log.lines() if "trace-me" in line]
    assert mine and all(line["request_id"] == "trace-me" for line in mine)


async def test_the_audit_queue_depth_counts_answers_not_yet_committed() -> None:
    settings = isolated_settings(auth=False)
    app = create_app(settings, clock=lambda: START)
    body = golden_request("t6-unspecified-low-b12", "patient-view")
    # Another writer holds the SQLite database: the audit writer waits, the answers do not.
    database = sqlite3.connect(Path(settings.data_dir) / SQLITE_FILE, isolation_level=None)
    async with client(app, signed=False) as c:
        idle = samples((await c.get("/metrics")).text)
        database.execute("BEGIN EXCLUSIVE")
        try:
            answers = [await c.post(PV, json=body) for _ in range(3)]
            held = samples((await c.get("/metrics")).text)
        finally:
            database.execute("ROLLBACK")
            database.close()
        assert await app.state.cds.store.audit.flush(timeout=30)
        drained = samples((await c.get("/metrics")).text)
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert value(idle, "cds_audit_queue_depth") == 0
    assert value(held, "cds_audit_queue_depth") == 3
    assert value(drained, "cds_audit_queue_depth") == 0
