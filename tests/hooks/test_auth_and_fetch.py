"""Authentication on (signed requests), and the fallback-fetch seam with a fake fetcher."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from auth.keys import jwks_of, make_token, new_ec_key
from support import golden_bundle, isolated_settings

from cds_service.app import create_app
from cds_service.hooks.prefetch import DataUnavailable
from cds_service.hooks.prefetch_templates import PREFETCH

from .helpers import START, client, golden_request

pytestmark = pytest.mark.anyio
BASE = "https://cds.example.org"
ISS = "urn:example:test-ehr"
PV = "/cds-services/b12-patient-view"
KEY = new_ec_key("hooks-test-key")


@pytest.fixture
def auth_app(tmp_path: Path) -> Any:
    clients = {"clients": [{"iss": ISS, "jwks": jwks_of(KEY), "fhir_servers": []}]}
    path = tmp_path / "clients.json"
    path.write_text(json.dumps(clients))
    return create_app(
        isolated_settings(auth=True, public_base_url=BASE, clients_file=str(path)),
        clock=lambda: START,
    )


def bearer(path: str, **claims: Any) -> dict[str, str]:
    return {"Authorization": "Bearer " + make_token(KEY, KEY.kid, ISS, BASE + path, **claims)}


async def test_signed_request_passes(auth_app: Any) -> None:
    body = golden_request("t6-unspecified-low-b12", "patient-view")
    async with client(auth_app, signed=False) as c:
        r = await c.post(PV, json=body, headers=bearer(PV))
        fb = await c.post(
            PV + "/feedback",
            json={"feedback": [{"card": "x", "outcome": "overridden", "outcomeTimestamp": "t"}]},
            headers=bearer(PV + "/feedback"),
        )
    assert r.status_code == 200 and r.json()["cards"]
    assert fb.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        bearer("/cds-services/b12-order-sign"),  # audience of another endpoint
        bearer(PV, exp=1, iat=0),  # expired
    ],
    ids=["missing", "garbage", "basic", "wrong-audience", "expired"],
)
async def test_bad_token_is_401_json(auth_app: Any, headers: dict[str, str]) -> None:
    body = golden_request("t6-unspecified-low-b12", "patient-view")
    async with client(auth_app, signed=False) as c:
        r = await c.post(PV, json=body, headers=headers)
        fb = await c.post(PV + "/feedback", json={"feedback": []}, headers=headers)
        # Authentication comes first: no hint whether the service exists or the body is valid.
        unknown = await c.post("/cds-services/nope", content=b"junk", headers=headers)
    for response in (r, fb, unknown):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json() == {"error": {"status": 401, "message": "authentication required"}}


async def test_replayed_token_is_401(auth_app: Any) -> None:
    body = golden_request("d5-normal-b12", "patient-view")
    headers = bearer(PV)
    async with client(auth_app, signed=False) as c:
        assert (await c.post(PV, json=body, headers=headers)).status_code == 200
        assert (await c.post(PV, json=body, headers=headers)).status_code == 401


async def test_discovery_auth_is_configurable(tmp_path: Path) -> None:
    clients = {"clients": [{"iss": ISS, "jwks": jwks_of(KEY), "fhir_servers": []}]}
    path = tmp_path / "clients.json"
    path.write_text(json.dumps(clients))
    settings = isolated_settings(auth=True, public_base_url=BASE, clients_file=str(path))
    async with client(create_app(settings)) as c:
        assert (await c.get("/cds-services")).status_code == 200
        assert (await c.get("/health")).status_code == 200
    locked = isolated_settings(
        auth=True, public_base_url=BASE, clients_file=str(path), discovery_requires_auth=True
    )
    async with client(create_app(locked)) as c:
        assert (await c.get("/cds-services")).status_code == 401
        ok = await c.get("/cds-services", headers=bearer("/cds-services"))
        assert ok.status_code == 200


class FakeFetcher:
    def __init__(self, answers: dict[str, Any], fail: dict[str, str] | None = None) -> None:
        self.answers = answers
        self.fail = fail or {}
        self.calls: list[tuple[str, str | None, dict[str, str]]] = []

    async def fetch(
        self, fhir_server: str, access_token: str | None, queries: dict[str, str], **_: Any
    ) -> dict[str, Any]:
        self.calls.append((fhir_server, access_token, queries))
        if self.fail:
            raise DataUnavailable(self.fail)
        return {k: v for k, v in self.answers.items() if k in queries}


async def test_missing_keys_are_fetched_when_a_fetcher_is_configured() -> None:
    body = golden_request("t6-unspecified-low-b12", "patient-view")
    observations = body["prefetch"].pop("observations")
    body["fhirAuthorization"] = {
        "access_token": "opaque",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "user/Observation.read",
        "subject": "b12-cds",
    }
    fetcher = FakeFetcher({"observations": observations})
    app = create_app(isolated_settings(auth=False), fetcher=fetcher, clock=lambda: START)
    async with client(app) as c:
        r = await c.post(PV, json=body)
    assert r.status_code == 200
    assert any(card["extension"]["card"] == "treatment" for card in r.json()["cards"])
    server, token, queries = fetcher.calls[0]
    assert server == body["fhirServer"] and token == "opaque"
    pid = body["context"]["patientId"]
    assert queries == {"observations": PREFETCH["observations"].replace(
        "{{context.patientId}}", pid)}  # fmt: skip


async def test_fetcher_failure_on_a_required_key_is_412() -> None:
    body = golden_request("t6-unspecified-low-b12", "patient-view")
    del body["prefetch"]["conditions"]
    fetcher = FakeFetcher({}, fail={"conditions": "FHIR server timed out"})
    app = create_app(isolated_settings(auth=False), fetcher=fetcher, clock=lambda: START)
    async with client(app) as c:
        r = await c.post(PV, json=body)
    assert r.status_code == 412
    assert r.json()["error"]["missing"] == ["conditions"]


APPLY = "/fhir/PlanDefinition/b12-deficiency-standard/$apply"


def apply_body(slug: str = "t6-unspecified-low-b12") -> dict[str, Any]:
    bundle = golden_bundle(slug)
    resources = [e["resource"] for e in bundle["entry"]]
    patient = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "subject", "valueString": f"Patient/{patient}"},
            {"name": "data", "resource": bundle},
        ],
    }


async def test_apply_needs_a_signed_request_as_the_hooks_do(auth_app: Any) -> None:
    """$apply reads and returns patient data; the knowledge artifacts stay public."""
    async with client(auth_app, signed=False) as c:
        unsigned_post = await c.post(APPLY, json=apply_body())
        unsigned_get = await c.get(APPLY, params={"subject": "Patient/p1"})
        garbage = await c.post(APPLY, json=apply_body(), headers={"Authorization": "Bearer x"})
        signed = await c.post(APPLY, json=apply_body(), headers=bearer(APPLY))
        artifact = await c.get("/fhir/PlanDefinition/b12-deficiency-standard")
    for response in (unsigned_post, unsigned_get, garbage):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.headers["content-type"].startswith("application/fhir+json")
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["diagnostics"] == "authentication required"
    assert signed.status_code == 200, signed.text
    assert signed.json()["resourceType"] == "CarePlan"
    assert artifact.status_code == 200


async def test_apply_body_past_the_limit_is_413_and_deep_nesting_is_400(tmp_path: Path) -> None:
    settings = isolated_settings(auth=False, max_body_bytes=4000)
    app = create_app(settings, clock=lambda: START)
    deep = b"[" * 1500 + b"]" * 1500  # deeper than orjson reads, within the size limit
    async with client(app, signed=False) as c:
        large = await c.post(APPLY, json=apply_body())
        nested = await c.post(APPLY, content=deep, headers={"Content-Type": "application/json"})
    assert large.status_code == 413
    assert large.json()["resourceType"] == "OperationOutcome"
    assert nested.status_code == 400
    assert nested.json()["issue"][0]["diagnostics"] == "the body is not JSON"
