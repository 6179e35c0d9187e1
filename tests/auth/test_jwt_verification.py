"""Verification of CDS client JWTs against real keys served from loopback HTTP servers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service.auth import (
    AuthenticationError,
    ClientRegistry,
    ClientsFileError,
    JwksCache,
    JwtVerifier,
    TrustedClient,
    VerificationKey,
    load_clients,
    url_is_under,
)
from cds_service.fetch import Allowlist

from .conftest import AUD, FHIR_BASE, INLINE_ISS, ISS, FakeClock, new_replay_cache
from .keys import (
    JwksServer,
    SigningKey,
    b64url,
    jwks_of,
    make_token,
    new_ec_key,
    new_rsa_key,
    unsigned_token,
)

EXAMPLE_CLIENTS_FILE = Path(__file__).resolve().parents[2] / "fhir_examples/clients.example.json"


def verify(verifier: JwtVerifier, token: str, audience: str = AUD) -> TrustedClient:
    return asyncio.run(verifier.verify(f"Bearer {token}", audience))


def rejected(verifier: JwtVerifier, authorization: str | None, audience: str = AUD) -> str:
    with pytest.raises(AuthenticationError) as info:
        asyncio.run(verifier.verify(authorization, audience))
    return info.value.reason


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"iss": ISS, "aud": AUD, "iat": now, "exp": now + 60, "jti": "j-1"}
    return {**base, **overrides}


# --- accepted tokens -------------------------------------------------------------------------


def test_valid_es384_token_passes(verifier: JwtVerifier, ec_key: SigningKey) -> None:
    client = verify(verifier, make_token(ec_key, ec_key.kid, ISS, AUD))
    assert client.iss == ISS
    # The fallback fetch adds the client's registered servers to the allowlist for its call.
    nothing_else = Allowlist()
    assert nothing_else.allows(FHIR_BASE + "/Patient/123", client.fhir_servers)
    assert not nothing_else.allows("https://ehr.example.org/fhir/R5", client.fhir_servers)


def test_valid_rs384_token_passes(verifier: JwtVerifier, rsa_key: SigningKey) -> None:
    assert verify(verifier, make_token(rsa_key, rsa_key.kid, ISS, AUD)).iss == ISS


def test_inline_jwks_client_passes_without_any_fetch(
    verifier: JwtVerifier, inline_key: SigningKey, jwks_server: JwksServer
) -> None:
    client = verify(verifier, make_token(inline_key, inline_key.kid, INLINE_ISS, AUD))
    assert client.iss == INLINE_ISS
    assert client.fhir_servers == ()
    assert jwks_server.hit_count() == 0


def test_aud_list_containing_endpoint_passes(verifier: JwtVerifier, ec_key: SigningKey) -> None:
    token = make_token(ec_key, ec_key.kid, ISS, ["https://other.example.org/x", AUD])
    assert verify(verifier, token).iss == ISS


def test_jku_equal_to_configured_url_passes(
    verifier: JwtVerifier, ec_key: SigningKey, jwks_server: JwksServer
) -> None:
    token = make_token(ec_key, ec_key.kid, ISS, AUD, jku=jwks_server.url)
    assert verify(verifier, token).iss == ISS


def test_scheme_is_case_insensitive(verifier: JwtVerifier, ec_key: SigningKey) -> None:
    token = make_token(ec_key, ec_key.kid, ISS, AUD)
    assert asyncio.run(verifier.verify(f"bearer {token}", AUD)).iss == ISS


def test_clock_skew_within_leeway_passes(
    make_verifier: Callable[..., JwtVerifier], ec_key: SigningKey
) -> None:
    now = time.time()
    verifier = make_verifier(leeway_s=30, clock=lambda: now + 20)
    token = make_token(ec_key, ec_key.kid, ISS, AUD, iat=int(now) - 290, exp=int(now))
    assert verify(verifier, token).iss == ISS


# --- rejected tokens -------------------------------------------------------------------------


def test_missing_header_fails(verifier: JwtVerifier) -> None:
    assert "missing" in rejected(verifier, None)
    assert "missing" in rejected(verifier, "")


@pytest.mark.parametrize("scheme", ["Basic", "Token", "Bearer-ish", ""])
def test_non_bearer_scheme_fails(verifier: JwtVerifier, ec_key: SigningKey, scheme: str) -> None:
    token = make_token(ec_key, ec_key.kid, ISS, AUD)
    assert "Bearer" in rejected(verifier, f"{scheme} {token}".strip())


def test_extra_credential_parts_fail(verifier: JwtVerifier, ec_key: SigningKey) -> None:
    token = make_token(ec_key, ec_key.kid, ISS, AUD)
    assert "Bearer" in rejected(verifier, f"Bearer {token} {token}")


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        "a.b",
        "a.b.c.d",
        "!!!.???.###",
        b64url(b"{not json") + "." + b64url(b"{}") + ".sig",
        b64url(b'["a list"]') + "." + b64url(b"{}") + ".sig",
        "x" * 10_000,
    ],
)
def test_malformed_token_fails(verifier: JwtVerifier, token: str) -> None:
    rejected(verifier, f"Bearer {token}")


def test_malformed_payload_fails(verifier: JwtVerifier) -> None:
    head = b64url(json.dumps({"alg": "ES384", "kid": "ec-1", "typ": "JWT"}).encode())
    assert "payload" in rejected(verifier, f"Bearer {head}.{b64url(b'[1,2]')}.{b64url(b'x')}")


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_fails(verifier: JwtVerifier, ec_key: SigningKey, alg: str) -> None:
    token = unsigned_token({"alg": alg, "kid": ec_key.kid, "typ": "JWT"}, claims())
    assert "algorithm" in rejected(verifier, f"Bearer {token}")


def test_hs256_with_public_key_pem_as_secret_fails(
    verifier: JwtVerifier, ec_key: SigningKey, rsa_key: SigningKey
) -> None:
    for key in (ec_key, rsa_key):
        pem = key.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        header = {"alg": "HS256", "kid": key.kid, "typ": "JWT"}
        signing_input = unsigned_token(header, claims()).rsplit(".", 1)[0]
        signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
        assert "algorithm" in rejected(verifier, f"Bearer {signing_input}.{b64url(signature)}")


@pytest.mark.parametrize("alg", ["HS384", "RS256", "PS384", "ES512", "EdDSA"])
def test_other_algorithms_fail_before_any_key_work(
    verifier: JwtVerifier, ec_key: SigningKey, jwks_server: JwksServer, alg: str
) -> None:
    token = unsigned_token({"alg": alg, "kid": ec_key.kid}, claims(), b"sig")
    assert "algorithm" in rejected(verifier, f"Bearer {token}")
    assert jwks_server.hit_count() == 0


def test_es256_token_fails_even_with_published_key(
    make_verifier: Callable[..., JwtVerifier], jwks_server: JwksServer, ec_key: SigningKey
) -> None:
    p256 = new_ec_key("p256", ec.SECP256R1())
    jwks_server.set_keys(ec_key, p256)
    token = make_token(p256, p256.kid, ISS, AUD)
    assert "algorithm" in rejected(make_verifier(), f"Bearer {token}")


def test_alg_not_matching_key_type_fails(verifier: JwtVerifier, rsa_key: SigningKey) -> None:
    # An RS384 signature presented under the EC key's kid, and vice versa.
    token = make_token(rsa_key, "ec-1", ISS, AUD)
    assert "does not match" in rejected(verifier, f"Bearer {token}")


def test_unknown_iss_fails(verifier: JwtVerifier, ec_key: SigningKey) -> None:
    token = make_token(ec_key, ec_key.kid, "https://stranger.example.org", AUD)
    assert "issuer" in rejected(verifier, f"Bearer {token}")
    token = make_token(ec_key, ec_key.kid, None, AUD)
    assert "issuer" in rejected(verifier, f"Bearer {token}")


def test_jku_off_allowlist_fails_and_is_never_fetched(
    verifier: JwtVerifier, ec_key: SigningKey, jwks_server: JwksServer, evil_server: JwksServer
) -> None:
    for jku in (
        evil_server.url,
        evil_server.base_url + jwks_server.path,  # same path, different port
        jwks_server.url.replace("127.0.0.1", "localhost"),  # different host spelling
        jwks_server.url + "-evil",  # not at a segment boundary
        jwks_server.url + "/../../evil",  # dot segments
        jwks_server.url.replace("http://", "http://user@"),
    ):
        token = make_token(ec_key, ec_key.kid, ISS, AUD, jku=jku)
        assert "jku" in rejected(verifier, f"Bearer {token}")
    assert evil_server.hit_count() == 0
    assert jwks_server.hit_count() == 0


def test_jku_under_configured_url_is_fetched_there(
    verifier: JwtVerifier, ec_key: SigningKey, jwks_server: JwksServer
) -> None:
    token = make_token(ec_key, ec_key.kid, ISS, AUD, jku=jwks_server.url + "/v2")
    assert "kid" in rejected(verifier, f"Bearer {token}")  # the test server 404s that path
    assert jwks_server.hits == [jwks_server.path + "/v2"]


def test_jku_with_inline_client_uses_the_configured_keys_and_never_fetches(
    verifier: JwtVerifier, inline_key: SigningKey, evil_server: JwksServer
) -> None:
    token = make_token(inline_key, inline_key.kid, INLINE_ISS, AUD, jku=evil_server.url)
    assert verify(verifier, token).iss == INLINE_ISS
    # A kid the configured keys lack is refused, and the jku is not fetched for it either.
    stranger = new_ec_key("not-configured")
    token = make_token(stranger, stranger.kid, INLINE_ISS, AUD, jku=evil_server.url)
    assert "kid" in rejected(verifier, f"Bearer {token}")
    assert evil_server.hits == []


def test_unknown_kid_fails(verifier: JwtVerifier, ec_key: SigningKey) -> None:
    assert "kid" in rejected(verifier, f"Bearer {make_token(ec_key, 'nope', ISS, AUD)}")
    assert "kid" in rejected(verifier, f"Bearer {make_token(ec_key, None, ISS, AUD)}")


def test_wrong_aud_fails(verifier: JwtVerifier, ec_key: SigningKey) -> None:
    for aud in (
        "https://cds.example.org/cds-services/other-service",
        AUD + "/",
        [AUD + "x"],
        [],
    ):
        token = make_token(ec_key, ec_key.kid, ISS, aud)
        assert "aud" in rejected(verifier, f"Bearer {token}")
    assert "aud" in rejected(verifier, f"Bearer {make_token(ec_key, ec_key.kid, ISS, None)}")


def test_expired_token_fails(verifier: JwtVerifier, ec_key: SigningKey) -> None:
    now = int(time.time())
    token = make_token(ec_key, ec_key.kid, ISS, AUD, iat=now - 200, exp=now - 31)
    assert "expired" in rejected(verifier, f"Bearer {token}")


def test_missing_exp_or_iat_fails(verifier: JwtVerifier, ec_key: SigningKey) -> None:
    token = make_token(ec_key, ec_key.kid, ISS, AUD, exp=None)
    assert "exp" in rejected(verifier, f"Bearer {token}")
    token = make_token(ec_key, ec_key.kid, ISS, AUD, iat=None)
    assert "iat" in rejected(verifier, f"Bearer {token}")
    token = make_token(ec_key, ec_key.kid, ISS, AUD, exp=10**400)
    assert "exp" in rejected(verifier, f"Bearer {token}")
    token = make_token(ec_key, ec_key.kid, ISS, AUD, exp="soon")
    assert "exp" in rejected(verifier, f"Bearer {token}")


def test_iat_in_future_fails(verifier: JwtVerifier, ec_key: SigningKey) -> None:
    now = int(time.time())
    token = make_token(ec_key, ec_key.kid, ISS, AUD, iat=now + 120, exp=now + 180)
    assert "future" in rejected(verifier, f"Bearer {token}")


def test_lifetime_over_the_maximum_fails(verifier: JwtVerifier, ec_key: SigningKey) -> None:
    token = make_token(ec_key, ec_key.kid, ISS, AUD, lifetime_s=3601)  # default: one hour
    assert "lifetime exceeds 3600 s" in rejected(verifier, f"Bearer {token}")


def test_the_maximum_lifetime_is_a_setting(
    make_verifier: Callable[..., JwtVerifier], ec_key: SigningKey
) -> None:
    verifier = make_verifier(max_lifetime_s=300)
    token = make_token(ec_key, ec_key.kid, ISS, AUD, lifetime_s=301)
    assert "lifetime exceeds 300 s" in rejected(verifier, f"Bearer {token}")


def test_replayed_jti_fails(verifier: JwtVerifier, ec_key: SigningKey) -> None:
    token = make_token(ec_key, ec_key.kid, ISS, AUD)
    verify(verifier, token)
    assert "already used" in rejected(verifier, f"Bearer {token}")
    # A different token reusing the jti is a replay too.
    again = make_token(ec_key, ec_key.kid, ISS, AUD, jti=json.loads(_payload(token))["jti"])
    assert "already used" in rejected(verifier, f"Bearer {again}")


def test_concurrent_replay_admits_exactly_one(verifier: JwtVerifier, ec_key: SigningKey) -> None:
    token = make_token(ec_key, ec_key.kid, ISS, AUD)

    async def race() -> list[Any]:
        calls = [verifier.verify(f"Bearer {token}", AUD) for _ in range(10)]
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(race())
    assert sum(isinstance(r, TrustedClient) for r in results) == 1
    assert sum(isinstance(r, AuthenticationError) for r in results) == 9


def test_rejected_token_does_not_burn_its_jti(verifier: JwtVerifier, ec_key: SigningKey) -> None:
    bad = make_token(ec_key, ec_key.kid, ISS, "https://wrong.example.org", jti="shared")
    rejected(verifier, f"Bearer {bad}")
    verify(verifier, make_token(ec_key, ec_key.kid, ISS, AUD, jti="shared"))


def test_missing_jti_fails(verifier: JwtVerifier, ec_key: SigningKey) -> None:
    assert "jti" in rejected(
        verifier, f"Bearer {make_token(ec_key, ec_key.kid, ISS, AUD, jti=None)}"
    )
    assert "jti" in rejected(verifier, f"Bearer {make_token(ec_key, ec_key.kid, ISS, AUD, jti='')}")
    assert "jti" in rejected(verifier, f"Bearer {make_token(ec_key, ec_key.kid, ISS, AUD, jti=7)}")


def test_signature_by_another_key_with_same_kid_fails(
    verifier: JwtVerifier, ec_key: SigningKey, rsa_key: SigningKey
) -> None:
    impostor_ec = new_ec_key(ec_key.kid)
    assert "signature" in rejected(
        verifier, f"Bearer {make_token(impostor_ec, ec_key.kid, ISS, AUD)}"
    )
    impostor_rsa = new_rsa_key(rsa_key.kid)
    assert "signature" in rejected(
        verifier, f"Bearer {make_token(impostor_rsa, rsa_key.kid, ISS, AUD)}"
    )


def test_tampered_payload_fails(verifier: JwtVerifier, ec_key: SigningKey) -> None:
    token = make_token(ec_key, ec_key.kid, ISS, "https://wrong.example.org")
    head, _, sig = token.split(".")
    forged = f"{head}.{b64url(json.dumps(claims()).encode())}.{sig}"
    assert "signature" in rejected(verifier, f"Bearer {forged}")


def test_crit_header_fails(verifier: JwtVerifier, ec_key: SigningKey) -> None:
    token = make_token(ec_key, ec_key.kid, ISS, AUD, headers={"crit": ["exp"], "exp": 1})
    rejected(verifier, f"Bearer {token}")


def test_replay_store_failure_fails_closed(
    clients: ClientRegistry, clock: FakeClock, ec_key: SigningKey
) -> None:
    class BrokenStore:
        async def check_and_store(self, iss: str, jti: str, expires_at: float) -> bool:
            raise ConnectionError("store down")

    verifier = JwtVerifier(clients, JwksCache(clock=clock), BrokenStore())
    assert "replay" in rejected(verifier, f"Bearer {make_token(ec_key, ec_key.kid, ISS, AUD)}")


def _payload(token: str) -> str:
    import base64

    segment = token.split(".")[1]
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)).decode()


# --- key rotation and refetch rate limiting --------------------------------------------------


def test_rotated_key_is_picked_up_without_restart(
    verifier: JwtVerifier, jwks_server: JwksServer, ec_key: SigningKey, clock: FakeClock
) -> None:
    verify(verifier, make_token(ec_key, ec_key.kid, ISS, AUD))
    assert jwks_server.hit_count() == 1
    verify(verifier, make_token(ec_key, ec_key.kid, ISS, AUD))
    assert jwks_server.hit_count() == 1  # served from cache

    rotated = new_ec_key("ec-2")
    jwks_server.set_keys(rotated)  # old key withdrawn, new key published
    clock.advance(61)
    assert verify(verifier, make_token(rotated, rotated.kid, ISS, AUD)).iss == ISS
    assert jwks_server.hit_count() == 2


def test_withdrawn_key_stops_working_after_max_age(
    clients: ClientRegistry, jwks_server: JwksServer, ec_key: SigningKey, clock: FakeClock
) -> None:
    jwks = JwksCache(clock=clock, max_age_s=300)
    verifier = JwtVerifier(clients, jwks, new_replay_cache())
    verify(verifier, make_token(ec_key, ec_key.kid, ISS, AUD))
    jwks_server.set_keys(new_ec_key("ec-2"))
    clock.advance(301)
    assert "kid" in rejected(verifier, f"Bearer {make_token(ec_key, ec_key.kid, ISS, AUD)}")
    assert jwks_server.hit_count() == 2


def test_unknown_kid_refetch_at_most_once_per_interval(
    make_verifier: Callable[..., JwtVerifier],
    jwks_server: JwksServer,
    ec_key: SigningKey,
    clock: FakeClock,
) -> None:
    verifier = make_verifier(refetch_interval_s=60)

    async def scenario() -> None:
        await verifier.verify(f"Bearer {make_token(ec_key, ec_key.kid, ISS, AUD)}", AUD)
        assert jwks_server.hit_count() == 1
        # A burst of unknown kids right after a fetch: no refetch at all.
        for i in range(20):
            with pytest.raises(AuthenticationError):
                await verifier.verify(f"Bearer {make_token(ec_key, f'x{i}', ISS, AUD)}", AUD)
        assert jwks_server.hit_count() == 1
        # Once the interval has passed: exactly one refetch, however many unknown kids follow.
        clock.advance(60)
        for i in range(20):
            with pytest.raises(AuthenticationError):
                await verifier.verify(f"Bearer {make_token(ec_key, f'y{i}', ISS, AUD)}", AUD)
        assert jwks_server.hit_count() == 2
        # Random jku values under the allowlisted URL share the same budget.
        for i in range(5):
            token = make_token(ec_key, ec_key.kid, ISS, AUD, jku=f"{jwks_server.url}/k{i}")
            with pytest.raises(AuthenticationError):
                await verifier.verify(f"Bearer {token}", AUD)
        assert jwks_server.hit_count() == 2

    asyncio.run(scenario())


def test_concurrent_first_requests_share_one_fetch(
    verifier: JwtVerifier, jwks_server: JwksServer, ec_key: SigningKey
) -> None:
    async def burst() -> list[Any]:
        tokens = [make_token(ec_key, ec_key.kid, ISS, AUD) for _ in range(10)]
        calls = [verifier.verify(f"Bearer {t}", AUD) for t in tokens]
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(burst())
    assert all(isinstance(r, TrustedClient) for r in results), results
    assert jwks_server.hit_count() == 1


def test_jwks_server_down_then_back(
    verifier: JwtVerifier, jwks_server: JwksServer, ec_key: SigningKey, clock: FakeClock
) -> None:
    jwks_server.status = 503
    assert "kid" in rejected(verifier, f"Bearer {make_token(ec_key, ec_key.kid, ISS, AUD)}")
    jwks_server.status = 200
    clock.advance(60)
    assert verify(verifier, make_token(ec_key, ec_key.kid, ISS, AUD)).iss == ISS


def test_jwks_fetch_timeout_is_enforced(
    clients: ClientRegistry, clock: FakeClock, ec_key: SigningKey
) -> None:
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # accepts connections, never answers
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/jwks"
    silent = ClientRegistry(
        [TrustedClient(iss=ISS, jwks_url=url, inline_keys=None, fhir_servers=())]
    )
    verifier = JwtVerifier(silent, JwksCache(timeout_s=0.3, clock=clock), new_replay_cache())
    started = time.monotonic()
    try:
        rejected(verifier, f"Bearer {make_token(ec_key, ec_key.kid, ISS, AUD)}")
    finally:
        listener.close()
    assert time.monotonic() - started < 3


# --- logging ---------------------------------------------------------------------------------


def test_token_never_appears_in_logs_or_reasons(
    verifier: JwtVerifier,
    ec_key: SigningKey,
    jwks_server: JwksServer,
    evil_server: JwksServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    impostor = new_ec_key(ec_key.kid)
    now = int(time.time())
    tokens = [
        make_token(ec_key, ec_key.kid, "https://stranger.example.org", AUD),
        make_token(ec_key, "nope", ISS, AUD),
        make_token(ec_key, ec_key.kid, ISS, "https://wrong.example.org"),
        make_token(ec_key, ec_key.kid, ISS, AUD, iat=now - 200, exp=now - 100),
        make_token(ec_key, ec_key.kid, ISS, AUD, lifetime_s=7200),
        make_token(ec_key, ec_key.kid, ISS, AUD, jti=None),
        make_token(ec_key, ec_key.kid, ISS, AUD, jku=evil_server.url),
        make_token(impostor, ec_key.kid, ISS, AUD),
        unsigned_token({"alg": "none", "kid": ec_key.kid}, claims()),
    ]
    replayed = make_token(ec_key, ec_key.kid, ISS, AUD)
    verify(verifier, replayed)
    tokens.append(replayed)

    reasons = []
    with caplog.at_level(logging.DEBUG):
        for token in tokens:
            reasons.append(rejected(verifier, f"Bearer {token}"))
    assert len([r for r in caplog.records if r.name == "cds_service.auth"]) >= len(tokens)
    logged = "\n".join(r.getMessage() + str(r.exc_info or "") for r in caplog.records)
    for token in tokens:
        for part in [token, *token.split(".")]:
            if part:
                assert part not in logged
                assert all(part not in reason for reason in reasons)
    assert "stranger" not in logged and "nope" not in logged


# --- URL allowlist ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "base", "expected"),
    [
        ("https://a.example/jwks", "https://a.example/jwks", True),
        ("https://A.example:443/jwks", "https://a.example/jwks", True),
        ("https://a.example/jwks/v2", "https://a.example/jwks", True),
        ("https://a.example/jwks/v2", "https://a.example/jwks/", True),
        ("https://a.example/anything", "https://a.example", True),
        ("https://a.example/jwks-evil", "https://a.example/jwks", False),
        ("https://a.example/jwk", "https://a.example/jwks", False),
        ("http://a.example/jwks", "https://a.example/jwks", False),
        ("https://a.example:8443/jwks", "https://a.example/jwks", False),
        ("https://b.example/jwks", "https://a.example/jwks", False),
        ("https://a.example.evil/jwks", "https://a.example/jwks", False),
        ("https://a.example@evil.example/jwks", "https://a.example/jwks", False),
        ("https://evil.example#@a.example/jwks", "https://a.example/jwks", False),
        ("https://a.example/jwks/../admin", "https://a.example/jwks", False),
        ("https://a.example/jwks/%2e%2e/admin", "https://a.example/jwks", False),
        ("https://a.example/jwks%2f..%2fadmin", "https://a.example/jwks", False),
        ("https://a.example/jwks\\..\\admin", "https://a.example/jwks", False),
        ("https://a.example/jwks?x=1", "https://a.example/jwks", False),
        ("ftp://a.example/jwks", "ftp://a.example/jwks", False),
        ("https://a.example:99999/jwks", "https://a.example/jwks", False),
        ("/jwks", "https://a.example/jwks", False),
    ],
)
def test_url_is_under(url: str, base: str, expected: bool) -> None:
    assert url_is_under(url, base) is expected


# --- trusted clients file --------------------------------------------------------------------


def write(tmp_path: Path, content: Any) -> Path:
    path = tmp_path / "clients.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_bare_list_form_loads(tmp_path: Path, inline_key: SigningKey) -> None:
    registry = load_clients(write(tmp_path, [{"iss": "urn:x", "jwks": jwks_of(inline_key)}]))
    client = registry.get("urn:x")
    assert client is not None and client.fhir_servers == () and len(registry) == 1


def test_example_clients_file_loads() -> None:
    registry = load_clients(EXAMPLE_CLIENTS_FILE)
    assert len(registry) >= 2
    assert any(client.jwks_url for client in registry)
    assert any(client.inline_keys for client in registry)


def _ec_jwk() -> dict[str, Any]:
    return new_ec_key("k").public_jwk()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON (line 1"),
        ("", "not valid JSON"),
        ({"client": []}, "top level"),
        ("42", "top level"),
        (["x"], "clients[0]: must be a JSON object"),
        ([{"jwks_url": "https://a.example/j"}], "'iss' is required"),
        ([{"iss": "", "jwks_url": "https://a.example/j"}], "'iss' is required"),
        ([{"iss": "a"}], "exactly one of 'jwks_url' or 'jwks'"),
        (
            [{"iss": "a", "jwks_url": "https://a.example/j", "jwks": {"keys": []}}],
            "exactly one of",
        ),
        ([{"iss": "a", "jwks_uri": "https://a.example/j"}], "unknown field(s) jwks_uri"),
        ([{"iss": "a", "jwks_url": "http://a.example/j"}], "must use https"),
        ([{"iss": "a", "jwks_url": "a.example/j"}], "absolute http(s) URL"),
        ([{"iss": "a", "jwks_url": 5}], "'jwks_url' must be an absolute"),
        (
            [{"iss": "a", "jwks_url": "https://a.example/j", "fhir_servers": "https://f"}],
            "'fhir_servers' must be an array",
        ),
        (
            [{"iss": "a", "jwks_url": "https://a.example/j", "fhir_servers": ["nope"]}],
            "fhir_servers[0]",
        ),
        (
            [
                {"iss": "a", "jwks_url": "https://a.example/j"},
                {"iss": "a", "jwks_url": "https://b.example/j"},
            ],
            "clients[1]: duplicate iss 'a' (also clients[0])",
        ),
        ([{"iss": "a", "jwks": {"keys": []}}], "contains no keys"),
        ([{"iss": "a", "jwks": []}], "'keys' array"),
        ([{"iss": "a", "jwks": {"keys": [{"kty": "EC"}]}}], "no 'kid'"),
        (
            [{"iss": "a", "jwks": {"keys": [{**_ec_jwk(), "crv": "P-256"}]}}],
            "only P-384",
        ),
        ([{"iss": "a", "jwks": {"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}}], "kty"),
        ([{"iss": "a", "jwks": {"keys": [{**_ec_jwk(), "x": "AAAA"}]}}], "not a valid JWK"),
        ([{"iss": "a", "jwks": {"keys": [{**_ec_jwk(), "d": "AAAA"}]}}], "private key"),
        ([{"iss": "a", "jwks": {"keys": [{**_ec_jwk(), "alg": "ES256"}]}}], "alg='ES256'"),
        ([{"iss": "a", "jwks": {"keys": [_ec_jwk(), _ec_jwk()]}}], "duplicate kid"),
    ],
)
def test_malformed_clients_file_fails_loudly(tmp_path: Path, content: Any, message: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(ClientsFileError) as info:
        load_clients(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_missing_clients_file_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(ClientsFileError, match="cannot read trusted-clients file"):
        load_clients(tmp_path / "absent.json")


def test_small_rsa_key_is_refused_in_config(tmp_path: Path) -> None:
    small = new_rsa_key("small", bits=1024)
    path = write(tmp_path, [{"iss": "a", "jwks": jwks_of(small)}])
    with pytest.raises(ClientsFileError, match="at least 2048"):
        load_clients(path)


# --- robustness ------------------------------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    header=st.fixed_dictionaries(
        {},
        optional={
            "alg": st.sampled_from(["ES384", "RS384", "none", "HS256"]) | _json_values,
            "kid": st.sampled_from(["inline-1", ""]) | _json_values,
            "typ": st.just("JWT") | _json_values,
            "jku": _json_values,
            "crit": _json_values,
        },
    ),
    payload=st.fixed_dictionaries(
        {},
        optional={
            "iss": st.just(INLINE_ISS) | _json_values,
            "aud": st.just(AUD) | _json_values,
            "exp": _json_values,
            "iat": _json_values,
            "jti": _json_values,
        },
    ),
    signature=st.binary(max_size=100),
)
def test_arbitrary_tokens_only_raise_authentication_error(
    inline_key: SigningKey, header: dict[str, Any], payload: dict[str, Any], signature: bytes
) -> None:
    registry = ClientRegistry(
        [c for c in load_clients(EXAMPLE_CLIENTS_FILE) if c.inline_keys]
        + [
            TrustedClient(
                iss=INLINE_ISS,
                jwks_url=None,
                inline_keys={inline_key.kid: _verification_key(inline_key)},
                fhir_servers=(),
            )
        ]
    )
    verifier = JwtVerifier(registry, JwksCache(), new_replay_cache())
    token = unsigned_token(header, payload, signature)
    with pytest.raises(AuthenticationError):
        asyncio.run(verifier.verify(f"Bearer {token}", AUD))


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_header_values_only_raise_authentication_error(value: str) -> None:
    verifier = JwtVerifier(ClientRegistry([]), JwksCache(), new_replay_cache())
    with pytest.raises(AuthenticationError):
        asyncio.run(verifier.verify(value, AUD))


def _verification_key(key: SigningKey) -> VerificationKey:
    from cds_service.auth.jwks import parse_jwk

    return parse_jwk(key.public_jwk())
