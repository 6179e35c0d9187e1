"""The audit trail: one GuidanceResponse per answer, and the cards it issued (one row each,
with the rule ids it cites as a JSON array).

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

from cds_service.store.audit_writer import AuditWriter
from cds_service.store.database import AsyncEngineSource
from cds_service.store.queue import WriteBehind
from cds_service.store.tables import feedback, guidance_response, issued_card

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class IssuedCard:
    """A card of an answer, as the feedback join and the figures per kind and rule need it."""

    uuid: str
    kind: str
    #: JSON arrays (text): the rule ids the card cites and its suggestion uuids.
    rules: str
    suggestions: str


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One answer to store, already flat: the GuidanceResponse as JSON text and its cards.

    Made flat when the answer is given (`of`), so the queue holds a few strings per answer
    rather than the cards' object graph: large graphs held across the write-behind delay would
    survive into older collector generations and make every later collection walk them.
    """

    id: str
    request_identifier: str
    service: str
    subject: str | None
    occurred: datetime
    status: str
    resource: str
    cards: tuple[IssuedCard, ...] = ()

    @classmethod
    def of(
        cls,
        resource: Mapping[str, Any],
        service: str,
        occurred: datetime,
        cards: Sequence[Mapping[str, Any]] = (),
    ) -> AuditRecord:
        return cls(
            id=resource["id"],
            request_identifier=resource["requestIdentifier"]["value"],
            service=service,
            subject=(resource.get("subject") or {}).get("reference"),
            occurred=occurred,
            status=resource["status"],
            resource=orjson.dumps(resource).decode(),
            cards=tuple(_issued(card) for card in cards if isinstance(card.get("uuid"), str)),
        )


def _issued(card: Mapping[str, Any]) -> IssuedCard:
    extension = card.get("extension") or {}
    return IssuedCard(
        uuid=card["uuid"],
        kind=str(extension.get("card", "unknown")),
        rules=orjson.dumps([str(r) for r in extension.get("rules", ())]).decode(),
        suggestions=orjson.dumps(
            [s["uuid"] for s in card.get("suggestions", ()) if s.get("uuid")]
        ).decode(),
    )


@dataclass(frozen=True)
class SearchPage:
    total: int
    resources: list[JSON]


class AuditLog:
    """`engine` reads and purges; `writer` commits the batches (`audit_writer`: on the driver
    itself, the one statement pair every answer adds)."""

    def __init__(
        self,
        engine: AsyncEngineSource,
        writer: AuditWriter,
        *,
        delay_s: float = 0.05,
    ) -> None:
        self._engine = engine
        self._writer = writer
        self.queue: WriteBehind[AuditRecord] = WriteBehind(self._write, delay_s=delay_s)

    async def record(self, record: AuditRecord) -> None:
        await self.queue.submit(record)

    async def flush(self, timeout: float | None = None) -> bool:
        return await self.queue.flush(timeout)

    async def _write(self, batch: Sequence[AuditRecord]) -> None:
        at = self._writer.timestamp
        responses = []
        cards = []
        for r in batch:
            occurred = at(r.occurred)
            responses.append(
                (r.id, r.request_identifier, r.service, r.subject, occurred, r.status, r.resource)
            )
            cards += [
                (c.uuid, r.id, r.service, c.kind, c.rules, c.suggestions, occurred) for c in r.cards
            ]
        await self._writer.write(responses, cards)

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
        async with self._engine().begin() as connection:
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
            "feedback": int(fb.rowcount or 0),
        }
