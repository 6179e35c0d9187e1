"""The shared ``fhir_server`` fixture, serving the golden patients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .runner import FhirTestServer

GOLDEN_PATIENTS = Path(__file__).resolve().parents[2] / "fhir_examples" / "patients"
FHIR_TOKEN = "test-fhir-token"

_shared: dict[str, FhirTestServer] = {}


@pytest.fixture
def fhir_server(request: pytest.FixtureRequest) -> Iterator[FhirTestServer]:
    """One server per session, since starting uvicorn per test adds up, but reset around each
    test so modes, recorded requests and added bundles never leak between tests.

    It expects ``Authorization: Bearer {fhir_server.token}``; set ``fhir_server.token = None``
    in a test to accept anonymous requests.
    """
    server = _shared.get("server")
    if server is None:
        bundles = GOLDEN_PATIENTS if GOLDEN_PATIENTS.is_dir() else ()
        server = _shared["server"] = FhirTestServer(bundles, token=FHIR_TOKEN).start()
        request.config.add_cleanup(server.stop)
        request.config.add_cleanup(_shared.clear)
    server.reset()
    yield server
    server.reset()
