"""Feedback on cards (CDS Hooks 2.0): kept in memory per process and logged without PHI."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

from cds_service.hooks.models import FeedbackRequest

logger = logging.getLogger("cds_service.feedback")


@dataclass(frozen=True)
class FeedbackRecord:
    service_id: str
    card: str
    outcome: str
    accepted_suggestions: tuple[str, ...]
    override_reason: str | None
    outcome_timestamp: str
    unknown_card: bool
    unknown_suggestions: tuple[str, ...]


class FeedbackStore:
    """Issued card / suggestion uuids and the feedback received, both bounded."""

    def __init__(self, *, max_cards: int = 100_000, max_records: int = 100_000) -> None:
        self._cards: OrderedDict[str, tuple[str, frozenset[str]]] = OrderedDict()
        self._max_cards = max_cards
        self.records: deque[FeedbackRecord] = deque(maxlen=max_records)
        self._lock = threading.Lock()

    def issue(self, service_id: str, cards: list[dict[str, Any]]) -> None:
        with self._lock:
            for card in cards:
                if isinstance(card.get("uuid"), str):
                    suggestions = frozenset(
                        s["uuid"] for s in card.get("suggestions", ()) if "uuid" in s
                    )
                    self._cards[card["uuid"]] = (service_id, suggestions)
            while len(self._cards) > self._max_cards:
                self._cards.popitem(last=False)

    def record(self, service_id: str, request: FeedbackRequest) -> list[FeedbackRecord]:
        out = []
        with self._lock:
            for item in request.feedback:
                issued = self._cards.get(item.card)
                known = issued is not None and issued[0] == service_id
                accepted = tuple(s.id for s in item.acceptedSuggestions or ())
                unknown_suggestions = tuple(
                    s for s in accepted if not known or issued is None or s not in issued[1]
                )
                reason = item.overrideReason.reason if item.overrideReason else None
                rec = FeedbackRecord(
                    service_id=service_id,
                    card=item.card,
                    outcome=item.outcome,
                    accepted_suggestions=accepted,
                    override_reason=reason.code if reason else None,
                    outcome_timestamp=item.outcomeTimestamp,
                    unknown_card=not known,
                    unknown_suggestions=unknown_suggestions,
                )
                self.records.append(rec)
                out.append(rec)
        for rec in out:
            # Card and suggestion uuids, outcome and reason code only: no user comment (free
            # text may hold PHI) and nothing about the patient.
            logger.info(
                "feedback service=%s card=%s outcome=%s suggestions=%s reason=%s unknown_card=%s",
                rec.service_id,
                rec.card,
                rec.outcome,
                ",".join(rec.accepted_suggestions) or "-",
                rec.override_reason or "-",
                rec.unknown_card,
            )
        return out
