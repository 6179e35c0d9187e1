"""Feedback, stored durably before it is acknowledged, and the acceptance figures per card.

An item is committed in the request that delivers it (never written behind): the 200 means it
is on disk, or on the PostgreSQL server. Sending the same item again stores nothing new (a
unique key over what the item says). Items are joined to the issued cards by card uuid; an item
about a card not (yet) in the database is kept and marked `card_known = false`.

Such an item may be about a card another worker answered a moment ago whose audit record is
still in that worker's write-behind queue, so the mark is provisional: whenever feedback is
read (`stored`, `analytics`), marked items whose card has arrived since are joined then
(`card_known` set, their unknown suggestions worked out again). The figures per kind and rule
join feedback to cards when they are read, so they never depend on the mark.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import and_, bindparam, func, select, true, update

from cds_service.hooks.feedback import FeedbackRecord
from cds_service.hooks.models import FeedbackRequest
from cds_service.store.audit import AuditLog
from cds_service.store.database import AsyncEngineSource
from cds_service.store.dialect import insert_for, json_elements
from cds_service.store.tables import feedback, issued_card

JSON = dict[str, Any]
#: How long feedback waits for this worker's pending audit records before it is joined.
AUDIT_FLUSH_TIMEOUT_S = 2.0


def _now() -> datetime:
    return datetime.now(UTC)


def dedupe_key(service: str, item: JSON) -> str:
    return hashlib.sha256(orjson.dumps([service, item], option=orjson.OPT_SORT_KEYS)).hexdigest()


class FeedbackLog:
    def __init__(
        self, engine: AsyncEngineSource, audit: AuditLog, *, clock: Callable[[], datetime] = _now
    ) -> None:
        self._engine = engine
        self._audit = audit
        self._clock = clock

    async def record(self, service_id: str, request: FeedbackRequest) -> list[FeedbackRecord]:
        """Store every item (committed when this returns) and say what was new."""
        # Cards this worker answered a moment ago may still be queued: write them first.
        await self._audit.flush(timeout=AUDIT_FLUSH_TIMEOUT_S)
        received = self._clock()
        uuids = sorted({item.card for item in request.feedback})
        records: list[FeedbackRecord] = []
        async with self._engine().begin() as connection:
            issued = {
                row.card_uuid: frozenset(orjson.loads(row.suggestions))
                for row in await connection.execute(
                    select(issued_card.c.card_uuid, issued_card.c.suggestions).where(
                        issued_card.c.card_uuid.in_(uuids), issued_card.c.service == service_id
                    )
                )
            }
            insert = insert_for(connection, feedback).on_conflict_do_nothing(
                index_elements=[feedback.c.dedupe_key]
            )
            for item in request.feedback:
                suggestions = issued.get(item.card)
                accepted = tuple(s.id for s in item.acceptedSuggestions or ())
                unknown = tuple(s for s in accepted if suggestions is None or s not in suggestions)
                reason = item.overrideReason.reason if item.overrideReason else None
                said = {
                    "card": item.card,
                    "outcome": item.outcome,
                    "accepted": sorted(accepted),
                    "reason": [reason.system, reason.code] if reason else None,
                    "at": item.outcomeTimestamp,
                }
                result = await connection.execute(
                    insert,
                    {
                        "dedupe_key": dedupe_key(service_id, said),
                        "service": service_id,
                        "card_uuid": item.card,
                        "outcome": item.outcome,
                        "accepted_suggestions": orjson.dumps(accepted).decode(),
                        "unknown_suggestions": orjson.dumps(unknown).decode(),
                        "override_reason_system": reason.system if reason else None,
                        "override_reason_code": reason.code if reason else None,
                        "outcome_timestamp": item.outcomeTimestamp,
                        "card_known": suggestions is not None,
                        "received_at": received,
                    },
                )
                records.append(
                    FeedbackRecord(
                        service_id=service_id,
                        card=item.card,
                        outcome=item.outcome,
                        accepted_suggestions=accepted,
                        override_reason=reason.code if reason else None,
                        outcome_timestamp=item.outcomeTimestamp,
                        unknown_card=suggestions is None,
                        unknown_suggestions=unknown,
                        new=result.rowcount == 1,
                    )
                )
        return records

    async def _join_late_cards(self, *where: Any) -> int:
        """Join the items marked `card_known = false` (of `where`) whose card is now stored."""
        f = feedback.c
        c = issued_card.c
        late = (
            select(f.id, f.accepted_suggestions, c.suggestions)
            .select_from(
                feedback.join(issued_card, and_(c.card_uuid == f.card_uuid, c.service == f.service))
            )
            .where(f.card_known.is_(False), *where)
        )
        async with self._engine().connect() as connection:
            rows = list(await connection.execute(late))
        if not rows:
            return 0
        updates = []
        for row in rows:
            issued = frozenset(orjson.loads(row.suggestions))
            unknown = [s for s in orjson.loads(row.accepted_suggestions) if s not in issued]
            updates.append({"row_id": row.id, "unknown": orjson.dumps(unknown).decode()})
        async with self._engine().begin() as connection:
            await connection.execute(
                update(feedback)
                .where(f.id == bindparam("row_id"), f.card_known.is_(False))
                .values(card_known=True, unknown_suggestions=bindparam("unknown")),
                updates,
            )
        return len(updates)

    async def stored(self, card_uuid: str) -> list[JSON]:
        """The feedback rows on one card (for the operator and the tests)."""
        await self._join_late_cards(feedback.c.card_uuid == card_uuid)
        async with self._engine().connect() as connection:
            rows = await connection.execute(
                select(feedback).where(feedback.c.card_uuid == card_uuid).order_by(feedback.c.id)
            )
            return [dict(r._mapping) for r in rows]

    async def analytics(self, since: datetime, until: datetime) -> JSON:
        """Cards shown in [since, until) per kind and per rule, and what became of them."""
        c = issued_card.c
        f = feedback.c
        await self._join_late_cards(f.received_at >= since)
        in_period = and_(c.issued_at >= since, c.issued_at < until)
        joined = issued_card.join(
            feedback, and_(f.card_uuid == c.card_uuid, f.service == c.service)
        )
        async with self._engine().connect() as connection:

            async def rows(statement: Any) -> list[Any]:
                return list(await connection.execute(statement))

            rule = json_elements(connection, c.rules)
            by_rule = issued_card.join(rule, true())
            shown_kind = await rows(select(c.kind, func.count()).where(in_period).group_by(c.kind))
            outcome_kind = await rows(
                select(c.kind, f.outcome, func.count(func.distinct(c.card_uuid)))
                .select_from(joined)
                .where(in_period)
                .group_by(c.kind, f.outcome)
            )
            reason_kind = await rows(
                select(c.kind, f.override_reason_code, func.count(func.distinct(c.card_uuid)))
                .select_from(joined)
                .where(in_period, f.outcome == "overridden")
                .group_by(c.kind, f.override_reason_code)
            )
            shown_rule = await rows(
                select(rule.c.value, func.count())
                .select_from(by_rule)
                .where(in_period)
                .group_by(rule.c.value)
            )
            outcome_rule = await rows(
                select(rule.c.value, f.outcome, func.count(func.distinct(c.card_uuid)))
                .select_from(
                    by_rule.join(feedback, and_(f.card_uuid == c.card_uuid, f.service == c.service))
                )
                .where(in_period)
                .group_by(rule.c.value, f.outcome)
            )
            reason_rule = await rows(
                select(
                    rule.c.value,
                    f.override_reason_code,
                    func.count(func.distinct(c.card_uuid)),
                )
                .select_from(
                    by_rule.join(feedback, and_(f.card_uuid == c.card_uuid, f.service == c.service))
                )
                .where(in_period, f.outcome == "overridden")
                .group_by(rule.c.value, f.override_reason_code)
            )
            unknown = (
                await connection.execute(
                    select(func.count())
                    .select_from(feedback)
                    .where(f.received_at >= since, f.received_at < until, f.card_known.is_(False))
                )
            ).scalar_one()
        return {
            "period": {"start": _iso(since), "end": _iso(until)},
            "byKind": _figures("kind", shown_kind, outcome_kind, reason_kind),
            "byRule": _figures("rule", shown_rule, outcome_rule, reason_rule),
            "feedbackOnUnknownCards": int(unknown),
        }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _figures(label: str, shown: list[Any], outcomes: list[Any], reasons: list[Any]) -> list[JSON]:
    table: dict[str, JSON] = {}
    for key, count in shown:
        table[key] = {
            label: key,
            "shown": int(count),
            "accepted": 0,
            "overridden": 0,
            "overrideReasons": {},
        }
    for key, outcome, count in outcomes:
        if key in table:
            table[key][outcome] = int(count)
    for key, code, count in reasons:
        if key in table:
            table[key]["overrideReasons"][code or "none"] = int(count)
    for entry in table.values():
        shown_n = entry["shown"]
        entry["acceptanceRate"] = round(entry["accepted"] / shown_n, 4) if shown_n else None
        entry["overrideRate"] = round(entry["overridden"] / shown_n, 4) if shown_n else None
    return sorted(table.values(), key=lambda e: str(e[label]))
