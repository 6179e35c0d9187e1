"""Discovery, health, CORS, error paths, the spec's own examples and feedback."""

from __future__ import annotations

import copy
import json
from datetime import date
from typing import Any

import httpx
import pytest
from support import isolated_settings

from cds_service.app import create_app
from cds_service.hooks.prefetch_templates import PREFETCH, REQUIRED_KEYS, render
from cds_service.protocol import default_protocol
from cds_service.settings import Settings, SettingsError

from .helpers import START, app_for, client, golden_request

pytestmark = pytest.mark.anyio
PV = "/cds-services/b12-patient-view"
SIGN = "/cds-services/b12-order-sign"


def assert_json_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"]["status"] == status
    assert isinstance(body["error"]["message"], str)
    assert "Traceback" not in response.text
    return body


async def test_health() -> None:
    async with client() as c:
        r = await c.get("/health")
    assert r.status_code == 200
    p = default_protocol()
    assert r.json() == {"status": "ok", "protocol": {"id": p.id, "version": p.version}}


async def test_discovery_lists_three_services_with_spec_prefetch_tokens() -> None:
    async with client() as c:
        r = await c.get("/cds-services")
    assert r.status_code == 200
    services = {s["id"]: s for s in r.json()["services"]}
    assert {k: s["hook"] for k, s in services.items()} == {
        "b12-patient-view": "patient-view",
        "b12-order-select": "order-select",
        "b12-order-sign": "order-sign",
    }
    for s in services.values():
        assert s["title"] and s["description"] and s["usageRequirements"]
        assert s["prefetch"] == PREFETCH
        for template in s["prefetch"].values():
            # Only {{context.patientId}}: a root-level primitive context field (CDS Hooks 2.0).
            assert template.count("{{") == template.count("{{context.patientId}}")
    obs = services["b12-patient-view"]["prefetch"]["observations"]
    assert "http://loinc.org|14685-2" in obs and "http://loinc.org|13964-2" in obs
    assert "date=" not in obs  # CDS Hooks 2.0 has no date token


def test_render_substitutes_tokens() -> None:
    ctx = {"patientId": "p 1", "userId": "Practitioner/u1"}
    assert render(PREFETCH["patient"], ctx) == "Patient/p%201"
    assert render("X?u={{userPractitionerId}}", ctx) == "X?u=u1"
    with pytest.raises(ValueError):
        render("X?u={{userPractitionerRoleId}}", ctx)
    with pytest.raises(ValueError):
        render("X?e={{context.encounterId}}", ctx)


async def test_cors_preflight_and_post() -> None:
    async with client() as c:
        pre = await c.options(
            PV,
            headers={
                "Origin": "https://sandbox.cds-hooks.org",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        post = await c.post(
            PV,
            json=golden_request("d5-normal-b12", "patient-view"),
            headers={"Origin": "https://sandbox.cds-hooks.org"},
        )
        get = await c.get("/cds-services", headers={"Origin": "https://x.example"})
    assert pre.status_code == 200
    assert "POST" in pre.headers["access-control-allow-methods"]
    assert pre.headers["access-control-allow-origin"] in ("*", "https://sandbox.cds-hooks.org")
    assert post.headers["access-control-allow-origin"] == "*"
    assert get.headers["access-control-allow-origin"] == "*"


async def test_cors_origins_from_settings() -> None:
    app = create_app(isolated_settings(auth=False, cors_origins=("https://ehr.example.org",)))
    async with client(app) as c:
        ok = await c.get("/health", headers={"Origin": "https://ehr.example.org"})
        other = await c.get("/health", headers={"Origin": "https://evil.example"})
    assert ok.headers["access-control-allow-origin"] == "https://ehr.example.org"
    assert "access-control-allow-origin" not in other.headers


def _valid() -> dict[str, Any]:
    return copy.deepcopy(golden_request("t6-unspecified-low-b12", "patient-view"))


def _without(body: dict[str, Any], *path: str) -> dict[str, Any]:
    target = body
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return body


def _set(body: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


BAD_BODIES = {
    "not json": b"{not json",
    "empty": b"",
    "json array": b"[]",
    "json string": b'"hello"',
    "invalid utf-8": b"\xff\xfe{",
    "missing hook": json.dumps(_without(_valid(), "hook")).encode(),
    "missing hookInstance": json.dumps(_without(_valid(), "hookInstance")).encode(),
    "missing context": json.dumps(_without(_valid(), "context")).encode(),
    "missing patientId": json.dumps(_without(_valid(), "context", "patientId")).encode(),
    "hook is a number": json.dumps(_set(_valid(), 3, "hook")).encode(),
    "context is a list": json.dumps(_set(_valid(), [], "context")).encode(),
    "patientId is a number": json.dumps(_set(_valid(), 7, "context", "patientId")).encode(),
    "prefetch is a list": json.dumps(_set(_valid(), [1], "prefetch")).encode(),
    "wrong hook": json.dumps(_set(_valid(), "order-sign", "hook")).encode(),
    "fhirServer not a url": json.dumps(_set(_valid(), "ftp://x", "fhirServer")).encode(),
    "authorization without server": json.dumps(
        _set(
            _without(_valid(), "fhirServer"),
            {
                "access_token": "t",
                "token_type": "Bearer",
                "expires_in": 1,
                "scope": "s",
                "subject": "c",
            },
            "fhirAuthorization",
        )
    ).encode(),  # fmt: skip
    "deeply nested": ("[" * 5000 + "]" * 5000).encode(),
}


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
async def test_bad_requests_get_400_json(name: str) -> None:
    async with client() as c:
        r = await c.post(PV, content=BAD_BODIES[name], headers={"content-type": "application/json"})
    assert_json_error(r, 400)


async def test_order_sign_needs_draft_orders() -> None:
    body = golden_request("s2-draft-iv-cyanocobalamin", "order-sign")
    async with client() as c:
        missing = await c.post(SIGN, json=_without(copy.deepcopy(body), "context", "draftOrders"))
        wrong = await c.post(SIGN, json=_set(copy.deepcopy(body), [], "context", "draftOrders"))
        select = copy.deepcopy(body)
        select["hook"] = "order-select"
        no_selections = await c.post("/cds-services/b12-order-select", json=select)
        select["context"]["selections"] = ["MedicationRequest/b12gp-019-medreq-1"]
        ok = await c.post("/cds-services/b12-order-select", json=select)
    assert_json_error(missing, 400)
    assert_json_error(wrong, 400)
    assert_json_error(no_selections, 400)
    assert ok.status_code == 200
    assert any(card["extension"]["card"] == "safety-S2" for card in ok.json()["cards"])


async def test_draft_order_status_must_be_a_code() -> None:
    body = golden_request("s2-draft-iv-cyanocobalamin", "order-sign")
    body["context"]["draftOrders"]["entry"][0]["resource"]["status"] = {"x": 1}
    async with client() as c:
        assert_json_error(await c.post(SIGN, json=body), 400)


async def test_order_select_checks_only_the_selected_drafts() -> None:
    body = golden_request("s2-draft-iv-cyanocobalamin", "order-sign")
    body["hook"] = "order-select"
    body["context"]["selections"] = ["MedicationRequest/something-else"]
    async with client() as c:
        r = await c.post("/cds-services/b12-order-select", json=body)
    # The IV draft is not the selected order: order-select answers about the selected one only.
    assert r.status_code == 200
    assert not any(c["extension"]["card"] == "safety-S2" for c in r.json()["cards"])


async def test_unknown_service_and_route() -> None:
    async with client() as c:
        assert_json_error(await c.post("/cds-services/nope", json=_valid()), 404)
        assert_json_error(await c.get("/nothing-here"), 404)
        assert_json_error(await c.get(PV), 405)
        assert_json_error(await c.put("/cds-services"), 405)


@pytest.mark.parametrize("key", REQUIRED_KEYS)
async def test_missing_required_prefetch_is_412(key: str) -> None:
    body = _valid()
    del body["prefetch"][key]
    async with client() as c:
        r = await c.post(PV, json=body)
    assert assert_json_error(r, 412)["error"]["missing"] == [key]


async def test_operation_outcome_counts_as_missing() -> None:
    body = _valid()
    body["prefetch"]["observations"] = {"resourceType": "OperationOutcome", "issue": []}
    async with client() as c:
        r = await c.post(PV, json=body)
    assert assert_json_error(r, 412)["error"]["missing"] == ["observations"]


async def test_missing_optional_prefetch_is_named_in_the_card() -> None:
    body = _valid()
    del body["prefetch"]["allergies"]
    async with client() as c:
        r = await c.post(PV, json=body)
    assert r.status_code == 200
    treatment = next(c for c in r.json()["cards"] if c["extension"]["card"] == "treatment")
    assert "**Not checked**" in treatment["detail"] and "allergies" in treatment["detail"]


async def test_null_prefetch_means_no_data() -> None:
    body = golden_request("d6-no-b12", "patient-view")
    body["prefetch"]["observations"] = None
    async with client() as c:
        r = await c.post(PV, json=body)
    assert r.status_code == 200 and r.json() == {"cards": []}


BAD_PREFETCH = {
    "wrong type in key": ("conditions", {"resourceType": "Patient", "id": "x"}),
    "wrong type in bundle": (
        "observations",
        {"resourceType": "Bundle", "type": "searchset",
         "entry": [{"resource": {"resourceType": "Condition", "id": "c"}}]},
    ),
    "not a resource": ("conditions", {"hello": 1}),
    "a string": ("observations", "Observation/1"),
    "entry not a list": ("conditions", {"resourceType": "Bundle", "entry": {}}),
    "entry item not an object": ("conditions", {"resourceType": "Bundle", "entry": [1]}),
    "status not a code": (
        "observations",
        {"resourceType": "Observation", "id": "o", "status": ["final"], "code": {}},
    ),
    "other patient": ("patient", {"resourceType": "Patient", "id": "someone-else"}),
    "other patient's condition": (
        "conditions",
        {"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/other"}},
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(BAD_PREFETCH))
async def test_bad_prefetch_is_400(name: str) -> None:
    key, value = BAD_PREFETCH[name]
    body = _valid()
    body["prefetch"][key] = value
    async with client() as c:
        assert_json_error(await c.post(PV, json=body), 400)


async def test_invalid_fhir_in_prefetch_is_400() -> None:
    body = _valid()
    obs = body["prefetch"]["observations"]["entry"][0]["resource"]
    obs["valueQuantity"]["value"] = "not a number"
    obs["status"] = "final"
    obs["effectiveDateTime"] = "2026-11-30"  # the latest result: the one the rules read
    async with client() as c:
        r = await c.post(PV, json=body)
    assert "not valid FHIR R4" in assert_json_error(r, 400)["error"]["message"]


async def test_body_over_the_limit_is_413() -> None:
    big = b'{"hook": "patient-view", "pad": "' + b"x" * (12 * 1024 * 1024) + b'"}'
    async with client() as c:
        r = await c.post(PV, content=big, headers={"content-type": "application/json"})
    assert_json_error(r, 413)


async def test_streamed_body_over_the_limit_is_413() -> None:
    app = create_app(isolated_settings(auth=False, max_body_bytes=4096))

    async def chunks() -> Any:
        for _ in range(10):
            yield b" " * 1024

    async with client(app) as c:
        r = await c.post(PV, content=chunks(), headers={"content-type": "application/json"})
        fb = await c.post(PV + "/feedback", content=chunks())
    assert "content-length" not in r.request.headers
    assert_json_error(r, 413)
    assert_json_error(fb, 413)


async def test_spec_patient_view_example_without_our_prefetch_is_412() -> None:
    """The CDS Hooks 2.0 'Calling a CDS Service' example: its prefetch has only a key of its
    own (`patientToGreet`), and no FHIR fetch is configured, so the answer is 412."""
    spec = {
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "fhirServer": "http://hooks.smarthealthit.org:9080",
        "hook": "patient-view",
        "fhirAuthorization": {
            "access_token": "some-opaque-fhir-access-token",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/Patient.read user/Observation.read",
            "subject": "cds-service4",
        },
        "context": {
            "userId": "Practitioner/example",
            "patientId": "1288992",
            "encounterId": "89284",
        },
        "prefetch": {
            "patientToGreet": {
                "resourceType": "Patient",
                "gender": "male",
                "birthDate": "1925-12-23",
                "id": "1288992",
                "active": True,
            }
        },
    }
    async with client() as c:
        r = await c.post(PV, json=spec)
        assert assert_json_error(r, 412)["error"]["missing"] == sorted(REQUIRED_KEYS)
        # With our prefetch keys filled in (empty record), the same request is answered.
        spec["prefetch"] = {
            "patient": spec["prefetch"]["patientToGreet"],
            "conditions": None,
            "observations": None,
        }
        ok = await c.post(PV, json=spec)
    assert ok.status_code == 200 and ok.json() == {"cards": []}


SPEC_ORDER_SIGN_CONTEXT: dict[str, Any] = {
    "userId": "PractitionerRole/123",
    "patientId": "1288992",
    "encounterId": "89284",
    "draftOrders": {
        "resourceType": "Bundle",
        "entry": [
            {"resource": {
                "resourceType": "NutritionOrder", "id": "pureeddiet-simple", "status": "draft",
                "patient": {"reference": "Patient/1288992"}, "dateTime": "2014-09-17",
                "oralDiet": {"type": [{"text": "Pureed diet"}]}}},
            {"resource": {
                "resourceType": "MedicationRequest", "id": "smart-MedicationRequest-103",
                "status": "draft", "intent": "order",
                "medicationCodeableConcept": {"coding": [{
                    "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "617993",
                    "display": "Amoxicillin 120 MG/ML / clavulanate potassium 8.58 MG/ML Oral "
                               "Suspension"}]},
                "subject": {"reference": "Patient/1288992"},
                "dosageInstruction": [{"text": "5 mL bid x 10 days",
                                       "timing": {"repeat": {"frequency": 2, "period": 1,
                                                             "periodUnit": "d"}},
                                       "doseQuantity": {"value": 5, "unit": "mL"}}]}},
        ],
    },
}  # fmt: skip


async def test_spec_order_sign_example() -> None:
    """The order-sign hook's R4 example context (abridged), wrapped in a request: no prefetch
    means 412; with an empty record it is 200 and, with no B12 order, no cards."""
    body = {
        "hook": "order-sign",
        "hookInstance": "0ea2ab77-8ab1-4f1b-a2d5-7ad4a7d06d4d",
        "context": copy.deepcopy(SPEC_ORDER_SIGN_CONTEXT),
    }
    async with client() as c:
        assert_json_error(await c.post(SIGN, json=body), 412)
        body["prefetch"] = {
            "patient": {"resourceType": "Patient", "id": "1288992"},
            "conditions": None,
            "observations": None,
        }
        r = await c.post(SIGN, json=body)
    assert r.status_code == 200 and r.json() == {"cards": []}


async def test_feedback_is_recorded() -> None:
    app = app_for()
    async with client(app) as c:
        cards = (
            await c.post(PV, json=golden_request("t2-pernicious-anemia-d51-0", "patient-view"))
        ).json()["cards"]
        card = cards[0]
        accepted = {
            "feedback": [
                {
                    "card": card["uuid"],
                    "outcome": "accepted",
                    "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
                    "outcomeTimestamp": "2026-12-01T10:05:31Z",
                },
                {
                    "card": "f6b95768-b1c8-40dc-8385-bf3504b82ffb",
                    "outcome": "overridden",
                    "overrideReason": {
                        "reason": card["overrideReasons"][0],
                        "userComment": "free text",
                    },
                    "outcomeTimestamp": "2026-12-01T10:05:31Z",
                },
            ]
        }
        r = await c.post(PV + "/feedback", json=accepted)
        assert r.status_code == 200 and r.json() == {}
        feedback = app.state.cds.store.feedback
        (first,) = await feedback.stored(card["uuid"])
        assert first["card_known"] and first["outcome"] == "accepted"
        assert first["unknown_suggestions"] == "[]"
        (second,) = await feedback.stored("f6b95768-b1c8-40dc-8385-bf3504b82ffb")
        assert not second["card_known"]
        assert second["override_reason_code"] == "patient-declines-injections"
        # Sent again: acknowledged, stored once.
        assert (await c.post(PV + "/feedback", json=accepted)).status_code == 200
        assert len(await feedback.stored(card["uuid"])) == 1

        for bad in (
            {},
            {"feedback": []},
            {"feedback": [{"card": "x", "outcome": "maybe", "outcomeTimestamp": "t"}]},
            {"feedback": [{"card": "x", "outcome": "accepted", "outcomeTimestamp": "t"}]},
            {"feedback": [{"outcome": "overridden", "outcomeTimestamp": "t"}]},
            [],
        ):
            assert_json_error(await c.post(PV + "/feedback", json=bad), 400)
        assert_json_error(await c.post(PV + "/feedback", content=b"nope"), 400)
        assert_json_error(await c.post("/cds-services/nope/feedback", json=accepted), 404)


def test_settings_from_env() -> None:
    s = Settings.from_env(
        {
            "CDS_AUTH": "off",
            "CDS_CORS_ORIGINS": "https://a.example, https://b.example",
            "CDS_MAX_BODY_BYTES": "2048",
            "CDS_PROFILE": "nice-ng239",
        }
    )
    assert not s.auth and s.cors_origins == ("https://a.example", "https://b.example")
    assert s.max_body_bytes == 2048 and s.profile == "nice-ng239"
    assert Settings.from_env({"CDS_AUTH": "off"}).max_body_bytes == 5 * 1024 * 1024
    for env in (
        {"CDS_AUTH": "maybe"},
        {"CDS_AUTH": "on"},
        {"CDS_AUTH": "on", "CDS_PUBLIC_BASE_URL": "https://cds.example.org"},
        {"CDS_AUTH": "off", "CDS_MAX_BODY_BYTES": "lots"},
    ):
        with pytest.raises(SettingsError):
            Settings.from_env(env)


def test_unknown_profile_fails_at_start_up() -> None:
    with pytest.raises(SettingsError, match="CDS_PROFILE: unknown protocol profile"):
        create_app(isolated_settings(auth=False, profile="no-such-profile"))


async def test_start_date_comes_from_the_clock() -> None:
    async with client() as c:
        r = await c.post(PV, json=golden_request("t6-unspecified-low-b12", "patient-view"))
    treatment = next(c for c in r.json()["cards"] if c["extension"]["card"] == "treatment")
    first = treatment["suggestions"][0]["actions"][0]["resource"]
    bounds = first["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]
    assert bounds["start"] == START.isoformat() and first["authoredOn"] == START.isoformat()


@pytest.mark.parametrize("depth", [300, 1000, 5000])
@pytest.mark.parametrize("where", ["root", "context", "prefetch", "observation", "coding"])
async def test_deeply_nested_json_anywhere_is_never_a_500(depth: int, where: str) -> None:
    body = _valid()
    marker = "__NESTED__"
    obs = body["prefetch"]["observations"]["entry"][0]["resource"]
    if where == "root":
        body["x"] = marker
    elif where == "context":
        body["context"]["x"] = marker
    elif where == "prefetch":
        body["prefetch"]["conditions"] = marker
    elif where == "observation":
        obs["extension"] = [{"url": "https://example.org/x", "valueString": marker}]
        obs["effectiveDateTime"] = "2026-11-30"
    else:
        obs["code"]["coding"].append(marker)
    raw = json.dumps(body).replace(json.dumps(marker), '{"a":' * depth + "{}" + "}" * depth)
    async with client() as c:
        r = await c.post(PV, content=raw, headers={"content-type": "application/json"})
    assert r.status_code in (200, 400), r.text
    assert r.headers["content-type"].startswith("application/json")


async def test_logs_hold_no_phi(
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = golden_request("t2-pernicious-anemia-d51-0", "patient-view")
    patient = body["prefetch"]["patient"]
    family = patient["name"][0]["family"]
    caplog.set_level("DEBUG")
    async with client() as c:
        cards = (await c.post(PV, json=body)).json()["cards"]
        feedback = {
            "feedback": [
                {
                    "card": cards[0]["uuid"],
                    "outcome": "overridden",
                    "overrideReason": {
                        "reason": cards[0]["overrideReasons"][0],
                        "userComment": f"{family} prefers tablets",
                    },
                    "outcomeTimestamp": "2026-12-01T10:05:31Z",
                }
            ]
        }
        assert (await c.post(PV + "/feedback", json=feedback)).status_code == 200
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (family, patient["id"], patient["birthDate"], "prefers tablets"):
        assert secret not in logged


async def test_an_unreadable_value_is_logged_by_place_not_by_value(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exception messages quote the data that caused them; the log names only where it failed."""
    from cds_service.engine import Engine

    def unreadable(self: Engine, resources: Any, **kwargs: Any) -> Any:
        date.fromisoformat("Smith-1950-13-45")  # a message that repeats patient data

    monkeypatch.setattr(Engine, "plan", unreadable)
    caplog.set_level("DEBUG")
    async with client() as c:
        r = await c.post(PV, json=golden_request("t6-unspecified-low-b12", "patient-view"))
    assert r.status_code == 400
    logged = "\n".join(
        r.getMessage() + (str(r.exc_info) if r.exc_info else "") for r in caplog.records
    )
    assert "ValueError at " in logged and "in unreadable" in logged
    assert "Smith" not in logged


async def test_a_wrong_resource_type_is_refused_without_echoing_it() -> None:
    body = golden_request("t6-unspecified-low-b12", "patient-view")
    entry = body["prefetch"]["conditions"]["entry"][0]["resource"]
    entry["resourceType"] = "Smith-John-1960-01-01"
    async with client() as c:
        r = await c.post(PV, json=body)
    message = assert_json_error(r, 400)["error"]["message"]
    assert message == "prefetch.conditions holds a resource that is not Condition"


async def test_auth_off_is_logged_at_start_up_and_not_on_every_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from cds_service.app import AUTH_OFF_WARNING

    caplog.set_level("WARNING")
    app = create_app(isolated_settings(auth=False), clock=lambda: START)
    at_start = sum(r.getMessage() == AUTH_OFF_WARNING for r in caplog.records)
    async with client(app, signed=False) as c:
        for _ in range(3):
            r = await c.post(PV, json=golden_request("t6-unspecified-low-b12", "patient-view"))
            assert r.status_code == 200
    assert at_start == 1
    assert sum(r.getMessage() == AUTH_OFF_WARNING for r in caplog.records) == 1


async def test_auth_off_is_repeated_at_most_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from starlette.requests import Request

    from cds_service.service_state import AUTH_OFF_WARNING, Authenticator

    caplog.set_level("WARNING")
    now = [1000.0]
    auth = Authenticator(Settings(auth=False), None, clock=lambda: now[0])
    request = Request({"type": "http", "method": "POST", "path": PV, "headers": []})
    for step in (10.0, 30.0, 19.0, 1.0, 59.0, 1.0):  # t = 10, 40, 59, 60, 119, 120
        now[0] += step
        assert await auth.verified(request)
    # At start-up, at t=60 and at t=120.
    assert sum(r.getMessage() == AUTH_OFF_WARNING for r in caplog.records) == 3


async def test_an_encounter_id_given_as_a_reference_is_not_prefixed_again() -> None:
    body = golden_request("t6-unspecified-low-b12", "patient-view")
    body["context"]["encounterId"] = "Encounter/enc-9"
    async with client() as c:
        cards = (await c.post(PV, json=body)).json()["cards"]
    encounters = {
        action["resource"]["encounter"]["reference"]
        for card in cards
        for suggestion in card.get("suggestions", [])
        for action in suggestion["actions"]
        if "encounter" in action.get("resource", {})
    }
    assert encounters == {"Encounter/enc-9"}


def test_a_fhir_base_url_that_cannot_be_used_stops_start_up() -> None:
    authed = {"CDS_PUBLIC_BASE_URL": "https://cds.example.org", "CDS_CLIENTS_FILE": "x.json"}
    for env in (
        {"CDS_AUTH": "off", "CDS_FHIR_BASE_URL": "not a url"},
        {"CDS_AUTH": "off", "CDS_FHIR_BASE_URL": "https://user@ehr.example.org/fhir"},
        {"CDS_AUTH": "on", **authed, "CDS_FHIR_BASE_URL": "http://ehr.example.org/fhir"},
    ):
        with pytest.raises(SettingsError, match="CDS_FHIR_BASE_URL"):
            Settings.from_env(env)
    ok = Settings.from_env(
        {"CDS_AUTH": "on", **authed, "CDS_FHIR_BASE_URL": "http://127.0.0.1:8080/fhir"}
    )
    assert ok.fhir_base_url == "http://127.0.0.1:8080/fhir"
