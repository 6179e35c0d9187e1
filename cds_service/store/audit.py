"""The audit trail: one GuidanceResponse per answer, and the cards it issued.

Answers are written behind (`WriteBehind`): the CDS client gets its cards without waiting for
a commit. Reads and searches are for the operator API; `purge` applies the retention period.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import delete, func, select

from cds_service.store.database import AsyncEngineSource
from cds_service.store.dialect import insert_for
from cds_service.store.queue import WriteBehind
from cds_service.store.tables import card_rule, feedback, guidance_response, issued_card

JSON = dict[str, Any]


@dataclass(frozen=True)
class AuditRecord:
    """One answer to store: the GuidanceResponse and the cards it names."""

    resource: JSON
    service: str
    occurred: datetime
    cards: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class SearchPage:
    total: int
    resources: list[JSON]


def _card_rows(record: AuditRecord) -> tuple[list[JSON], list[JSON]]:
    cards: list[JSON] = []
    rules: list[JSON] = []
    for card in record.cards:
        uuid = card.get("uuid")
        if not isinstance(uuid, str):
            continue
        extension = card.get("extension") or {}
        suggestions = [s["uuid"] for s in card.get("suggestions", ()) if s.get("uuid")]
        cards.append(
            {
                "card_uuid": uuid,
                "guidance_response_id": record.resource["id"],
                "service": record.service,
                "kind": str(extension.get("card", "unknown")),
                "suggestions": orjson.dumps(suggestions).decode(),
                "issued_at": record.occurred,
            }
        )
        rules += [{"card_uuid": uuid, "rule_id": str(r)} for r in extension.get("rules", ())]
    return cards, rules


class AuditLog:
    def __init__(self, engine: AsyncEngineSource, *, delay_s: float = 0.05) -> None:
        self._engine = engine
        self.queue: WriteBehind[AuditRecord] = WriteBehind(self._write, delay_s=delay_s)

    async def record(self, record: AuditRecord) -> None:
        await self.queue.submit(record)

    async def flush(self, timeout: float | None = None) -> bool:
        return await self.queue.flush(timeout)

    async def _write(self, batch: Sequence[AuditRecord]) -> None:
        responses = [
            {
                "id": r.resource["id"],
                "request_identifier": r.resource["requestIdentifier"]["value"],
                "module": r.service,
                "subject": (r.resource.get("subject") or {}).get("reference"),
                "occurred_at": r.occurred,
                "status": r.resource["status"],
                "resource": orjson.dumps(r.resource).decode(),
            }
            for r in batch
        ]
        cards: list[JSON] = []
        rules: list[JSON] = []
        for r in batch:
            c, k = _card_rows(r)
            cards += c
            rules += k
        async with self._engine().begin() as connection:
            # A batch retried after a failure that had in fact committed inserts nothing twice.
            await connection.execute(
                insert_for(connection, guidance_response).on_conflict_do_nothing(), responses
            )
            if cards:
                await connection.execute(
                    insert_for(connection, issued_card).on_conflict_do_nothing(), cards
                )
            if rules:
                await connection.execute(
                    insert_for(connection, card_rule).on_conflict_do_nothing(), rules
                )

    async def read(self, response_id: str) -> JSON | None:
        async with self._engine().connect() as connection:
            row = (
                await connection.execute(
                    select(guidance_response.c.resource).where(
                        guidance_response.c.id == response_id
                    )
                )
            ).first()
        return None if row is None else dict(orjson.loads(row[0]))

    async def search(
        self,
        *,
        subject: str | None = None,
        request: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        since_inclusive: bool = True,
        until_inclusive: bool = False,
        count: int = 50,
        offset: int = 0,
    ) -> SearchPage:
        """Newest first; `since`/`until` bound `occurrenceDateTime`."""
        t = guidance_response.c
        where = []
        if subject is not None:
            where.append(t.subject == subject)
        if request is not None:
            where.append(t.request_identifier == request)
        if since is not None:
            where.append(t.occurred_at >= since if since_inclusive else t.occurred_at > since)
        if until is not None:
            where.append(t.occurred_at <= until if until_inclusive else t.occurred_at < until)
        async with self._engine().connect() as connection:
            total = (
                await connection.execute(
                    select(func.count()).select_from(guidance_response).where(*where)
                )
            ).scalar_one()
            rows = (
                await connection.execute(
                    select(t.resource)
                    .where(*where)
                    .order_by(t.occurred_at.desc(), t.id)
                    .limit(count)
                    .offset(offset)
                )
            ).all()
        return SearchPage(int(total), [dict(orjson.loads(r[0])) for r in rows])

    async def purge(self, before: datetime) -> dict[str, int]:
        """Delete answers, their cards and the feedback on them older than `before`."""
        old_cards = select(issued_card.c.card_uuid).where(issued_card.c.issued_at < before)
        async with self._engine().begin() as connection:
            rules = await connection.execute(
                delete(card_rule).where(card_rule.c.card_uuid.in_(old_cards))
            )
            fb = await connection.execute(delete(feedback).where(feedback.c.received_at < before))
            cards = await connection.execute(
                delete(issued_card).where(issued_card.c.issued_at < before)
            )
            responses = await connection.execute(
                delete(guidance_response).where(guidance_response.c.occurred_at < before)
            )
        return {
            "guidanceResponses": int(responses.rowcount or 0),
            "cards": int(cards.rowcount or 0),
            "cardRules": int(rules.rowcount or 0),
            "feedback": int(fb.rowcount or 0),
        }
