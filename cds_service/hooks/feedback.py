"""Feedback on cards (CDS Hooks 2.0): what one feedback item says, and its log line."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

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
        # Card and suggestion uuids, outcome and reason code only: no user comment (free
        # text may hold PHI) and nothing about the patient.
        logger.info(
            "feedback service=%s card=%s outcome=%s suggestions=%s reason=%s unknown_card=%s "
            "duplicate=%s",
            rec.service_id,
            rec.card,
            rec.outcome,
            ",".join(rec.accepted_suggestions) or "-",
            rec.override_reason or "-",
            rec.unknown_card,
            not rec.new,
        )
