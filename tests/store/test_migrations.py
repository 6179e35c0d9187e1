"""Migrations: applied at start-up or by command, idempotent, and matching the tables."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from cds_service.cli import main
from cds_service.settings import Settings
from cds_service.store import Store, StoreError
from cds_service.store.database import create_engine, database_url
from cds_service.store.migrate import current_revision, head_revision
from cds_service.store.tables import metadata


def _schema_differences(settings: Settings) -> list[Any]:
    async def compare() -> list[Any]:
        engine = create_engine(database_url(settings))
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(
                    lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
                )
        finally:
            await engine.dispose()

    return asyncio.run(compare())


def test_upgrade_reaches_head_and_matches_the_tables(store_settings: Any) -> None:
    settings = store_settings(auth=False)
    target = database_url(settings)
    assert current_revision(target) is None
    Store(settings).open()
    assert current_revision(target) == head_revision()
    Store(settings).open()  # a second start (another worker) finds nothing to do
    assert _schema_differences(settings) == []


def test_db_upgrade_command(store_settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = store_settings(auth=False)
    if settings.database_url:
        monkeypatch.setenv("CDS_DATABASE_URL", settings.database_url)
    else:
        monkeypatch.setenv("CDS_DATA_DIR", settings.data_dir)
    monkeypatch.setenv("CDS_AUTH", "off")
    # Without migrations at start-up, an unmigrated database stops the service.
    with pytest.raises(StoreError, match="b12-cds db upgrade"):
        Store(store_settings(auth=False, migrate_on_start=False)).open()
    assert main(["db", "upgrade"]) == 0
    Store(store_settings(auth=False, migrate_on_start=False)).open()
    assert current_revision(database_url(settings)) == head_revision()


def test_unreachable_database_names_the_variable() -> None:
    unreachable = Settings(auth=False, database_url="postgresql://nobody:secret@127.0.0.1:1/none")
    with pytest.raises(StoreError) as info:
        Store(unreachable).open()
    message = str(info.value)
    assert message.startswith("CDS_DATABASE_URL: cannot reach or migrate the database")
    assert "secret" not in message and "\n" not in message
    with pytest.raises(StoreError, match="^CDS_DATABASE_URL: unsupported database"):
        Store(Settings(auth=False, database_url="mysql://x@localhost/db"))


def test_unwritable_data_dir_names_the_variable(tmp_path: Any) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="^CDS_DATA_DIR: cannot create"):
        Store(Settings(auth=False, data_dir=str(blocker / "var")))


def test_the_service_stops_with_one_line_naming_the_variable() -> None:
    env = {
        **os.environ,
        "CDS_AUTH": "off",
        "CDS_DATABASE_URL": "postgresql://cds:hunter2@127.0.0.1:1/cds",
        "CDS_LOG_FORMAT": "text",
    }
    done = subprocess.run(
        [sys.executable, "-c", "import cds_service.app as a; a.app"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.startswith("b12-cds")]
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert lines[0].startswith("b12-cds: cannot start: CDS_DATABASE_URL: cannot reach")
    assert "hunter2" not in done.stderr


def test_card_rule_rows_move_into_the_rules_column(store_settings: Any) -> None:
    """A database of the first schema keeps the rule ids of its cards through the upgrade."""
    from sqlalchemy import text

    from cds_service.store.migrate import upgrade

    target = database_url(store_settings(auth=False))
    upgrade(target, "0001")

    async def run(statements: list[str]) -> list[Any]:
        engine = create_engine(target)
        try:
            async with engine.begin() as connection:
                out = [await connection.execute(text(s)) for s in statements]
                return [list(r) if r.returns_rows else None for r in out]
        finally:
            await engine.dispose()

    asyncio.run(
        run(
            [
                "INSERT INTO issued_card (card_uuid, guidance_response_id, service, kind, "
                "suggestions, issued_at) VALUES ('c1', 'g1', 'b12-patient-view', 'treatment', "
                "'[]', '2026-12-01 10:00:00'), ('c2', 'g1', 'b12-patient-view', 'info', '[]', "
                "'2026-12-01 10:00:00')",
                "INSERT INTO card_rule (card_uuid, rule_id) VALUES ('c1', 'S2'), ('c1', 'D1')",
            ]
        )
    )
    upgrade(target)
    (rows,) = asyncio.run(run(["SELECT card_uuid, rules FROM issued_card ORDER BY card_uuid"]))
    assert [(r[0], json.loads(r[1])) for r in rows] == [("c1", ["D1", "S2"]), ("c2", [])]
    assert _schema_differences(store_settings(auth=False)) == []
