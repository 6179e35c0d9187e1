"""One log line per request: what the on-call engineer greps for when an EHR reports a call.

The fields are the request id (logged with every line), method, route template, status,
duration, and what the route recorded: CDS service, hookInstance, cards and rule ids, the reason
of an error in words, the issuer of the verified client. No path a caller chose, no query
string, no header, no body: those can hold patient data and tokens.
"""

from __future__ import annotations

import logging
from typing import Any

from cds_service.middleware.observe import FinishedCall

logger = logging.getLogger("cds_service.request")

#: Routes that probes and scrapers call.
PROBES = frozenset({"/health", "/health/live", "/health/ready", "/metrics"})
#: Longest client-chosen string written (hookInstance is up to 256 characters by the model).
MAX_CLIENT_CHARS = 128
#: Longest reason written: a 404 names the id the caller asked for.
MAX_REASON_CHARS = 500


def _cap(value: str | None, limit: int = MAX_CLIENT_CHARS) -> str | None:
    if value is None or len(value) <= limit:
        return value
    return value[:limit] + "..."


def fields_of(call: FinishedCall) -> dict[str, Any]:
    record = call.record
    fields: dict[str, Any] = {
        "method": call.method,
        "route": call.route,
        "status": call.status,
        "duration_ms": round(call.seconds * 1000, 2),
    }
    if record.service is not None:
        fields["service"] = record.service
    if record.hook_instance is not None:
        fields["hook_instance"] = _cap(record.hook_instance)
    if record.cards is not None:
        fields["cards"] = len(record.cards)
        fields["rules"] = sorted({rule for _, rules in record.cards for rule in rules})
    if record.reason is not None:
        fields["reason"] = _cap(record.reason, MAX_REASON_CHARS)
    if record.unavailable:
        fields["unavailable"] = sorted(record.unavailable)
    if record.auth_refusal is not None:
        fields["auth_refusal"] = _cap(record.auth_refusal, MAX_REASON_CHARS)
    if record.feedback:
        fields["feedback"] = record.feedback
    if record.client_iss is not None:
        fields["client_iss"] = _cap(record.client_iss)
    return fields


def log_call(call: FinishedCall) -> None:
    level = (
        logging.ERROR
        if call.status >= 500
        else logging.WARNING
        if call.status >= 400
        else logging.INFO
    )
    logger.log(level, "request", extra={"fields": fields_of(call)})
