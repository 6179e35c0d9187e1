"""Fixtures for the auth tests: real keys, loopback JWKS servers and a configured verifier."""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # lets `pytest` run before the package is pip-installed
    sys.path.insert(0, str(REPO_ROOT))

from cds_service.auth import (  # noqa: E402
    ClientRegistry,
    JwksCache,
    JwtVerifier,
    load_clients,
)
from cds_service.settings import Settings  # noqa: E402
from cds_service.store import DatabaseReplayCache  # noqa: E402
from cds_service.store.database import Database, database_url  # noqa: E402
from cds_service.store.migrate import upgrade  # noqa: E402

from .keys import JwksServer, SigningKey, jwks_of, new_ec_key, new_rsa_key  # noqa: E402

ISS = "https://ehr.example.org"
INLINE_ISS = "urn:example:inline-ehr"
AUD = "https://cds.example.org/cds-services/b12-patient-view"
FHIR_BASE = "https://ehr.example.org/fhir/R4"


_REPLAY_DATABASE: list[Database] = []


def new_replay_cache() -> DatabaseReplayCache:
    """The service's replay cache on one SQLite database migrated once per run (jtis are
    random, so tests do not see each other's tokens)."""
    if not _REPLAY_DATABASE:
        target = database_url(Settings(auth=False, data_dir=tempfile.mkdtemp(prefix="b12-replay-")))
        upgrade(target)
        _REPLAY_DATABASE.append(Database(target))
    return DatabaseReplayCache(_REPLAY_DATABASE[0])


class FakeClock:
    """A monotonic clock tests can move forward, so rate limits need no sleeping."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def ec_key() -> SigningKey:
    return new_ec_key("ec-1")


@pytest.fixture(scope="session")
def rsa_key() -> SigningKey:
    return new_rsa_key("rsa-1")


@pytest.fixture(scope="session")
def inline_key() -> SigningKey:
    return new_ec_key("inline-1")


@pytest.fixture
def jwks_server(ec_key: SigningKey, rsa_key: SigningKey) -> Iterator[JwksServer]:
    with JwksServer(keys=[ec_key, rsa_key]) as server:
        yield server


@pytest.fixture
def evil_server(ec_key: SigningKey, rsa_key: SigningKey) -> Iterator[JwksServer]:
    """A second key server that no client trusts; tests assert it is never contacted."""
    with JwksServer(keys=[ec_key, rsa_key]) as server:
        yield server


@pytest.fixture
def clients_document(jwks_server: JwksServer, inline_key: SigningKey) -> dict[str, Any]:
    return {
        "clients": [
            {
                "iss": ISS,
                "name": "Example EHR",
                "jwks_url": jwks_server.url,
                "fhir_servers": [FHIR_BASE],
            },
            {"iss": INLINE_ISS, "jwks": jwks_of(inline_key), "fhir_servers": []},
        ]
    }


@pytest.fixture
def clients(tmp_path: Path, clients_document: dict[str, Any]) -> ClientRegistry:
    path = tmp_path / "clients.json"
    path.write_text(json.dumps(clients_document), encoding="utf-8")
    return load_clients(path)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_verifier(clients: ClientRegistry, clock: FakeClock) -> Callable[..., JwtVerifier]:
    """Build a verifier with a fresh JWKS cache on the fake monotonic clock."""

    def build(*, refetch_interval_s: float = 60.0, **kwargs: Any) -> JwtVerifier:
        jwks = JwksCache(refetch_interval_s=refetch_interval_s, clock=clock)
        return JwtVerifier(clients, jwks, new_replay_cache(), **kwargs)

    return build


@pytest.fixture
def verifier(make_verifier: Callable[..., JwtVerifier]) -> JwtVerifier:
    return make_verifier()
