"""Cards an order hook raises once per hook instance (protocol "Cards per hook").

order-select fires again with the same hookInstance each time the clinician picks an order. The
card builder is pure and answers every call alike; here, at the edge, a card kind listed in
`ONCE_PER_HOOK_INSTANCE` is left out when any worker has already answered it for this hook
instance. A card about the orders themselves (IV, duplicates, dose) is never left out: the
orders may have changed.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from cds_service.hooks.cards.parts import ORDER_HOOKS
from cds_service.safe_log import where_raised
from cds_service.store import RaisedCards

logger = logging.getLogger("cds_service.app")

#: The compact reminder of an untreated deficiency beside a B12-relevant draft.
ONCE_PER_HOOK_INSTANCE = frozenset({"untreated-deficiency"})


async def raised_once(
    raised: RaisedCards, hook: str, hook_instance: str, cards: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """`cards` without those of a once-per-hook-instance kind raised before for this instance."""
    if hook not in ORDER_HOOKS:
        return cards
    out = []
    for card in cards:
        kind = str((card.get("extension") or {}).get("card", ""))
        if kind in ONCE_PER_HOOK_INSTANCE:
            try:
                first = await raised.first_time(hook_instance, kind)
            except (SQLAlchemyError, OSError) as exc:
                # Shown again rather than lost: a repeated reminder is the lesser harm.
                logger.error("raised-once check failed: %s", where_raised(exc))
                first = True
            if not first:
                continue
        out.append(card)
    return out
