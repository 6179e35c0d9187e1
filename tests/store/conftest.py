"""Every state-layer test runs on both databases: embedded SQLite and a real PostgreSQL."""

from __future__ import annotations

import tempfile
from typing import Any

import pytest
from pgcluster import PgCluster

from cds_service.settings import Settings

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_env(backend: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """The CDS_* variables naming a fresh, empty database of `backend`."""
    if backend == "postgresql":
        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        return {"CDS_DATABASE_URL": cluster.create_database()}
    return {"CDS_DATA_DIR": tempfile.mkdtemp(prefix="b12-cds-data-")}


@pytest.fixture
def store_settings(database_env: dict[str, str]) -> Any:
    """Build Settings on that database: `store_settings(auth=False, ...)`."""

    def build(**values: Any) -> Settings:
        if "CDS_DATABASE_URL" in database_env:
            values.setdefault("database_url", database_env["CDS_DATABASE_URL"])
        else:
            values.setdefault("data_dir", database_env["CDS_DATA_DIR"])
        return Settings(**values)

    return build
