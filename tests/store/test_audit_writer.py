"""The audit batches written on the driver itself (SQLite's own connection, asyncpg's
executemany): what Core reads back, a batch written twice, a failed write kept and retried;
on SQLite, a write lock held by another worker waited for off the loop, and the WAL
checkpointed in the writer's thread."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from cds_service.settings import Settings
from cds_service.store import AuditRecord, Store
from cds_service.store.audit import AuditLog, IssuedCard
from cds_service.store.audit_writer import SqliteAuditWriter
from cds_service.store.migrate import upgrade
from cds_service.store.tables import guidance_response, issued_card

pytestmark = pytest.mark.anyio
OCCURRED = datetime(2026, 12, 1, 10, 5, 31, 123456, tzinfo=UTC)


def _record(subject: str = "Patient/p1") -> AuditRecord:
    response_id = str(uuid.uuid4())
    resource = {"resourceType": "GuidanceResponse", "id": response_id, "status": "success"}
    return AuditRecord(
        id=response_id,
        request_identifier=f"hook-{response_id}",
        service="b12-patient-view",
        subject=subject,
        occurred=OCCURRED,
        status="success",
        resource=orjson.dumps(resource).decode(),
        cards=(IssuedCard(str(uuid.uuid4()), "treatment", '["S1","R2"]', '["s-1"]'),),
    )


async def _rows(store: Store, table: Any) -> list[Any]:
    async with store.database().connect() as connection:
        return list(await connection.execute(select(table)))


async def test_rows_read_back_through_core_as_written(store_settings: Any) -> None:
    store = Store(store_settings(auth=False))
    store.open()
    records = [_record(), _record(subject="Patient/p2")]
    for record in records:
        await store.audit.record(record)
    assert await store.audit.flush(timeout=10)
    responses = {row.id: row for row in await _rows(store, guidance_response)}
    assert set(responses) == {r.id for r in records}
    row = responses[records[1].id]
    assert (row.request_identifier, row.module, row.subject, row.status) == (
        records[1].request_identifier,
        "b12-patient-view",
        "Patient/p2",
        "success",
    )
    # The timestamp Core reads is the one written (SQLite keeps it without its zone).
    assert row.occurred_at.replace(tzinfo=UTC) == OCCURRED
    assert orjson.loads(row.resource)["id"] == records[1].id
    cards = {row.card_uuid: row for row in await _rows(store, issued_card)}
    card = cards[records[0].cards[0].uuid]
    assert (card.guidance_response_id, card.kind, card.rules, card.suggestions) == (
        records[0].id,
        "treatment",
        '["S1","R2"]',
        '["s-1"]',
    )
    assert card.issued_at.replace(tzinfo=UTC) == OCCURRED
    # Searches by date compare with what was written.
    page = await store.audit.search(
        subject="Patient/p2", since=OCCURRED, until=OCCURRED, until_inclusive=True
    )
    assert [r["id"] for r in page.resources] == [records[1].id]
    await store.close()


async def test_a_batch_written_again_inserts_nothing_twice(store_settings: Any) -> None:
    """A batch whose commit went through but whose answer was lost is retried as it was."""
    store = Store(store_settings(auth=False))
    store.open()
    record = _record()
    await store.audit._write([record])
    await store.audit._write([record, _record()])
    assert len(await _rows(store, guidance_response)) == 2
    assert len(await _rows(store, issued_card)) == 2
    await store.close()


async def test_a_failed_write_is_kept_and_retried(store_settings: Any) -> None:
    """The database refuses the batch (here: not migrated yet); the records stay queued, in
    order, and are written once the database can take them."""
    store = Store(store_settings(auth=False))  # not opened: no tables
    records = [_record(), _record()]
    for record in records:
        await store.audit.record(record)
    assert not await store.audit.flush(timeout=0.3)
    assert store.audit.queue.depth == 2
    await asyncio.to_thread(upgrade, store.target)
    assert await store.audit.flush(timeout=15)
    assert {row.id for row in await _rows(store, guidance_response)} == {r.id for r in records}
    await store.close()


async def test_close_flushes_and_the_writer_opens_again(store_settings: Any) -> None:
    """A graceful shutdown writes everything queued; a store used again afterwards (one app
    served by several loops in tests) writes on a new connection."""
    store = Store(store_settings(auth=False))
    store.open()
    await store.audit.record(_record())
    await store.close()
    assert store.audit.queue.depth == 0
    await store.audit.record(_record())
    assert await store.audit.flush(timeout=10)
    assert len(await _rows(store, guidance_response)) == 2
    await store.close()


def _sqlite_store(tmp_path: Any) -> Store:
    store = Store(Settings(auth=False, data_dir=str(tmp_path)))
    store.open()
    return store


def _sqlite_path(store: Store) -> str:
    path = store.target.url.database
    assert path
    return path


async def test_a_write_lock_held_elsewhere_is_waited_for_off_the_loop(tmp_path: Any) -> None:
    """Another worker holds SQLite's write lock: the batch waits for it in the writer's thread
    while the event loop goes on answering; it is written once the lock is let go."""
    store = _sqlite_store(tmp_path)
    writer = store.database.audit_writer()
    assert isinstance(writer, SqliteAuditWriter)
    other = sqlite3.connect(_sqlite_path(store), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    record = _record()
    await store.audit.record(record)
    flushing = asyncio.create_task(store.audit.flush(timeout=10))
    ticks = 0
    for _ in range(30):  # 0.3 s of a loop that must not be blocked
        await asyncio.sleep(0.01)
        ticks += 1
    assert not flushing.done() and writer.contended >= 1
    other.execute("COMMIT")
    other.close()
    assert await flushing
    assert ticks == 30
    assert {row.id for row in await _rows(store, guidance_response)} == {record.id}
    await store.close()


def _big_records(n: int) -> list[AuditRecord]:
    """Records the size of a real answer's (about 6 KB of GuidanceResponse each)."""
    padding = "x" * 6000
    return [
        dataclasses.replace(_record(), resource=orjson.dumps({"pad": padding}).decode())
        for _ in range(n)
    ]


async def _write_big_batch(
    tmp_path: Any, checkpoint_s: float
) -> tuple[Store, SqliteAuditWriter, int]:
    """200 answers' records written through a writer of its own; the store, the writer and
    the database file's size before the write."""
    store = _sqlite_store(tmp_path)
    writer = SqliteAuditWriter(_sqlite_path(store), busy_timeout_ms=1000, checkpoint_s=checkpoint_s)
    size = os.path.getsize(_sqlite_path(store))
    await AuditLog(store.database, writer)._write(_big_records(200))
    return store, writer, size


async def test_the_loop_commits_leave_the_wal_to_the_checkpoints(tmp_path: Any) -> None:
    """The commits made on the loop never copy the WAL into the database (that is an fsync the
    loop would wait for); closing the writer does, in its thread."""
    store, writer, size = await _write_big_batch(tmp_path, checkpoint_s=3600)
    path = _sqlite_path(store)
    assert os.path.getsize(path) == size  # all of it still in the WAL
    await writer.close()
    assert os.path.getsize(path) > size + 1_000_000  # copied by the closing checkpoint
    await store.close()


async def test_the_wal_is_checkpointed_while_batches_are_written(tmp_path: Any) -> None:
    store, writer, size = await _write_big_batch(tmp_path, checkpoint_s=0)
    assert writer._checkpoint is not None
    await asyncio.wrap_future(writer._checkpoint)
    assert os.path.getsize(_sqlite_path(store)) > size + 1_000_000  # copied, nothing closed
    await writer.close()
    await store.close()
