"""The audit batches written on the driver itself (SQLite's own connection, asyncpg's
executemany): what Core reads back, a batch written twice, and a failed write kept and retried."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from cds_service.store import AuditRecord, Store
from cds_service.store.audit import IssuedCard
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
