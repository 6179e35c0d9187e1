"""Shared fixtures: the loopback FHIR server and a throwaway PostgreSQL server."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402
from fhirserver.conftest import fhir_server  # noqa: E402, F401
from pgcluster import PgCluster  # noqa: E402


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One throwaway PostgreSQL server for the run, started by the first test that needs it."""
    cluster = PgCluster()
    try:
        yield cluster
    finally:
        cluster.stop()
