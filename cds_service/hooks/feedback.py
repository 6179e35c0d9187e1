"""Feedback on cards (CDS Hooks 2.0): what one feedback item says, and its log line."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from cds_service.hooks.cards.parts import OVERRIDE_REASONS

logger = logging.getLogger("cds_service.feedback")


@dataclass(frozen=True)
class FeedbackRecord:
    service_id: str
    card: str
    outcome: str
    accepted_suggestions: tuple[str, ...]
    override_reason: str | None
    outcome_timestamp: str
    #: No card with this uuid was issued by this service (kept, and counted apart).
    unknown_card: bool
    unknown_suggestions: tuple[str, ...]
    #: False when the same item had been received before (stored once).
    new: bool = True


def log_feedback(records: Iterable[FeedbackRecord]) -> None:
    for rec in records:
        # Validated uuids, the outcome and the service's own reason codes only: a client string
        # could forge log lines (a newline) or flood them (a 1 MB code), and the user comment
        # is free text that may hold PHI.
        shown = [_uuid_or_mark(s) for s in rec.accepted_suggestions[:MAX_LOGGED_SUGGESTIONS]]
        more = len(rec.accepted_suggestions) - len(shown)
        reason = rec.override_reason
        logger.info(
            "feedback service=%s card=%s outcome=%s suggestions=%s reason=%s unknown_card=%s "
            "duplicate=%s",
            rec.service_id,
            _uuid_or_mark(rec.card),
            rec.outcome,
            (",".join(shown) or "-") + (f",+{more} more" if more > 0 else ""),
            "-" if reason is None else reason if reason in _OWN_CODES else "not-an-own-reason",
            rec.unknown_card,
            not rec.new,
        )


#: Accepted suggestions named per feedback line; the rest are counted.
MAX_LOGGED_SUGGESTIONS = 10
_OWN_CODES = frozenset(str(r["code"]) for r in OVERRIDE_REASONS)


def _uuid_or_mark(value: str) -> str:
    """The uuid in canonical form, or a fixed mark: never the client's string itself."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return "not-a-uuid"
