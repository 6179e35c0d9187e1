"""Authentication as real EHRs send it, through HTTP: Epic-style lifetimes and nbf, the CDS Hooks
sandbox's own token against `fhir_examples/clients.example.json`, key rotation and JWKS
outages."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sandbox_client import SignedBySandbox, sandbox_jwt

from cds_service.app import create_app
from cds_service.settings import Settings

from .keys import JwksServer, SigningKey, make_token, new_ec_key

pytestmark = pytest.mark.anyio
BASE = "https://cds.example.org"
PV = "/cds-services/b12-patient-view"
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "fhir_examples" / "clients.example.json"
EPIC_ISS = "https://epic.example-hospital.org"


def _request() -> dict[str, Any]:
    path = ROOT / "fhir_examples/requests/t2-pernicious-anemia-d51-0.patient-view.json"
    return json.loads(path.read_text())


def app_with(clients: list[dict[str, Any]], tmp_path: Path, **settings: Any) -> Any:
    path = tmp_path / "clients.json"
    path.write_text(json.dumps({"clients": clients}))
    return create_app(Settings(auth=True, public_base_url=BASE, clients_file=str(path), **settings))


async def post(app: Any, token: str | None, auth: httpx.Auth | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=BASE, auth=auth
    ) as c:
        return await c.post(PV, json=_request(), headers=headers)


# --- 11. token lifetime and nbf ---------------------------------------------------------------


@pytest.fixture
def epic_key() -> SigningKey:
    return new_ec_key("epic-1")


@pytest.fixture
def epic_jwks(epic_key: SigningKey) -> Any:
    with JwksServer(keys=[epic_key]) as server:
        yield server


def epic_token(key: SigningKey, jwks: JwksServer, **claims: Any) -> str:
    """Epic's shape: 900 s of lifetime, nbf = iat - 300, a jku naming its key set."""
    now = int(time.time())
    fields = {"iat": now, "exp": now + 900, "nbf": now - 300, **claims}
    return make_token(key, key.kid, EPIC_ISS, BASE + PV, jku=jwks.url, **fields)


async def test_an_epic_style_token_of_900_s_with_nbf_before_iat_is_accepted(
    tmp_path: Path, epic_key: SigningKey, epic_jwks: JwksServer
) -> None:
    app = app_with([{"iss": EPIC_ISS, "jwks_url": epic_jwks.url}], tmp_path)
    r = await post(app, epic_token(epic_key, epic_jwks))
    assert r.status_code == 200, r.text


async def test_nbf_is_honoured_with_a_small_skew(
    tmp_path: Path, epic_key: SigningKey, epic_jwks: JwksServer
) -> None:
    app = app_with([{"iss": EPIC_ISS, "jwks_url": epic_jwks.url}], tmp_path)
    now = int(time.time())
    assert (await post(app, epic_token(epic_key, epic_jwks, nbf=now + 20))).status_code == 200
    assert (await post(app, epic_token(epic_key, epic_jwks, nbf=now + 120))).status_code == 401


async def test_the_maximum_lifetime_is_one_hour_by_default_and_a_setting(
    tmp_path: Path, epic_key: SigningKey, epic_jwks: JwksServer
) -> None:
    clients = [{"iss": EPIC_ISS, "jwks_url": epic_jwks.url}]
    now = int(time.time())
    app = app_with(clients, tmp_path)
    assert (await post(app, epic_token(epic_key, epic_jwks, exp=now + 3600))).status_code == 200
    assert (await post(app, epic_token(epic_key, epic_jwks, exp=now + 3700))).status_code == 401
    short = app_with(clients, tmp_path, jwt_max_lifetime_s=300)
    assert (await post(short, epic_token(epic_key, epic_jwks))).status_code == 401


# --- 12 and 14. the sandbox, trusted locally with its JWKS inline ------------------------------


async def test_the_sandboxs_own_token_is_accepted_with_the_example_clients_file() -> None:
    """The sandbox's exact token (ES384, its kid, a jku at sandbox.cds-hooks.org) against the
    example file's inline sandbox keys: accepted, and nothing is fetched."""
    app = create_app(Settings(auth=True, public_base_url=BASE, clients_file=str(EXAMPLE)))
    r = await post(app, None, auth=SignedBySandbox())
    assert r.status_code == 200, r.text
    sandbox = next(c for c in json.loads(EXAMPLE.read_text())["clients"] if "sandbox" in c["iss"])
    assert "jwks" in sandbox and "jwks_url" not in sandbox
    assert "NEVER in production" in sandbox["description"]
    header = sandbox_jwt(BASE + PV).split(".")[0]
    jku = json.loads(base64.urlsafe_b64decode(header + "=="))["jku"]
    assert jku.startswith("https://sandbox.cds-hooks.org/")


# --- 13. rotation and outages ----------------------------------------------------------------


async def test_a_rotated_key_is_accepted_within_10_s_while_unknown_kid_tokens_arrive(
    tmp_path: Path,
) -> None:
    old, new = new_ec_key("old"), new_ec_key("new")
    with JwksServer(keys=[old]) as jwks:
        app = app_with([{"iss": EPIC_ISS, "jwks_url": jwks.url}], tmp_path)  # default settings

        def token(key: SigningKey, kid: str | None = None) -> str:
            return make_token(key, kid or key.kid, EPIC_ISS, BASE + PV)

        assert (await post(app, token(old))).status_code == 200
        jwks.set_keys(old, new)
        rotated = time.monotonic()
        accepted_after = None
        for i in range(60):
            assert (await post(app, token(new, f"random-{i}"))).status_code == 401
            if (await post(app, token(new))).status_code == 200:
                accepted_after = time.monotonic() - rotated
                break
            await asyncio.sleep(0.25)
        assert accepted_after is not None and accepted_after < 10, accepted_after
        # Unknown kids did not make us hammer the key server: about one fetch per 5 s.
        assert jwks.hit_count() <= 3


async def test_after_a_failed_jwks_fetch_the_retry_comes_within_seconds(tmp_path: Path) -> None:
    key = new_ec_key("k1")
    with JwksServer(keys=[key], status=500) as jwks:
        app = app_with([{"iss": EPIC_ISS, "jwks_url": jwks.url}], tmp_path)
        token = make_token(key, key.kid, EPIC_ISS, BASE + PV)
        assert (await post(app, token)).status_code == 401  # the key server is down
        jwks.status = 200
        began = time.monotonic()
        while time.monotonic() - began < 4:
            if (await post(app, make_token(key, key.kid, EPIC_ISS, BASE + PV))).status_code == 200:
                break
            await asyncio.sleep(0.2)
        waited = time.monotonic() - began
        assert waited < 2.5, waited  # first retry 1 s after the failure, not the 5 s interval
