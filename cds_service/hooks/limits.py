"""How much one hook call may carry: caps that keep a call from holding the event loop.

Counting is cheap (lengths of arrays); what the caps bound is the work after them: reading
every entry of every key, picking the latest result per analyte, checking every draft order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cds_service.clinical.raw import OBJECT


class TooLargeError(ValueError):
    """The call carries more than a cap allows (answered with 413; the message names the cap)."""


@dataclass(frozen=True)
class Caps:
    draft_orders: int
    entries_per_key: int
    resources: int


def _entries(value: Any) -> int:
    if not isinstance(value, OBJECT):
        return 0
    if value.get("resourceType") != "Bundle":
        return 1
    entries = value.get("entry")
    return len(entries) if isinstance(entries, list) else 0


def check_caps(prefetch: Mapping[str, Any] | None, context: Mapping[str, Any], caps: Caps) -> None:
    """Raise TooLargeError when the prefetch or the draft orders exceed a cap."""
    total = 0
    for key, value in (prefetch or {}).items():
        count = _entries(value)
        if count > caps.entries_per_key:
            raise TooLargeError(
                f"prefetch.{key} holds more than {caps.entries_per_key} resources "
                "(CDS_MAX_ENTRIES_PER_KEY)"
            )
        total += count
    drafts = _entries(context.get("draftOrders"))
    if drafts > caps.draft_orders:
        raise TooLargeError(
            f"context.draftOrders holds more than {caps.draft_orders} orders (CDS_MAX_DRAFT_ORDERS)"
        )
    if total + drafts > caps.resources:
        raise TooLargeError(
            f"the request holds more than {caps.resources} resources (CDS_MAX_RESOURCES)"
        )
