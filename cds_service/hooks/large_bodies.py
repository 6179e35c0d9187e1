"""Large hook requests, read in the reading process (cds_service.offload.pool).

The child parses and checks a request over `OFFLOAD_BYTES` exactly as the event loop would
(400 and 413 with the same messages) and sends back the same request, as JSON, with each
prefetch Bundle cut down to the entries the rules can read (cds_service.offload.relevant):
kilobytes instead of megabytes. The event loop answers that small request along the ordinary
path, so the answer is the one the whole request would get. A cut-down Bundle still says what
it lacks (`cut_down`), so a partial one is refused as the whole would be.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson

from cds_service.api_errors import ApiError
from cds_service.clinical.raw import OBJECT
from cds_service.fhir.search_completeness import match_count, total_of
from cds_service.hooks.limits import Caps, TooLargeError, check_caps
from cds_service.hooks.models import RequestError, parse_hook_request
from cds_service.hooks.prefetch import PrefetchError, read_prefetch
from cds_service.hooks.prefetch_templates import PREFETCH
from cds_service.offload.pool import ReaderPool
from cds_service.offload.relevant import relevant_bundle
from cds_service.request_body import parse_json


@dataclass(frozen=True)
class Slimmed:
    """What the child sends back: the cut-down request as JSON, or the error to answer."""

    body: bytes | None
    status: int = 200
    message: str = ""


def cut_down(value: Any, today: date) -> Any:
    """`value` with only the entries the rules read, saying as much about what it lacks as the
    whole: its OperationOutcomes are kept and its `total` is lowered by the matches left out,
    so `partial_reason` and the paginated total check find what they find in the whole."""
    if not isinstance(value, OBJECT) or not isinstance(value.get("entry"), list):
        return relevant_bundle(value, today)
    outcomes = [
        e["resource"]
        for e in value["entry"]
        if isinstance(e, OBJECT)
        and isinstance(e.get("resource"), OBJECT)
        and e["resource"].get("resourceType") == "OperationOutcome"
    ]
    kept = relevant_bundle(value, today, also=outcomes)
    total = total_of(value)
    if kept is value or total is None:
        return kept
    return {
        **kept,
        "total": max(0, total - (match_count(value["entry"]) - match_count(kept["entry"]))),
    }


def slim(raw: bytes, hook: str, caps: Caps, today: date) -> Slimmed:
    """The request `raw` with only the prefetch entries the rules can read; or its error.

    Runs in the child process. Every check the event loop makes on a request is made here on
    the whole request (JSON, nesting, envelope, caps, the type and patient of every entry), so
    nothing that is refused in full is answered once cut down."""
    try:
        body = parse_json(raw)
        request = parse_hook_request(body, hook)
        check_caps(request.prefetch, request.context, caps)
        read_prefetch(request)
    except ApiError as exc:
        return Slimmed(None, exc.status, exc.message)
    except (RequestError, PrefetchError) as exc:
        return Slimmed(None, 400, str(exc))
    except TooLargeError as exc:
        return Slimmed(None, 413, str(exc))
    prefetch = body.get("prefetch") or {}
    body["prefetch"] = {key: cut_down(prefetch[key], today) for key in PREFETCH if key in prefetch}
    return Slimmed(orjson.dumps(body))


async def slim_request(pool: ReaderPool, raw: bytes, hook: str, caps: Caps, today: date) -> bytes:
    """`raw` cut down to what the rules read; raises ApiError (400, 413) as parsing would."""
    result = await pool.run(slim, raw, hook, caps, today)
    if result.body is None:
        raise ApiError(result.status, result.message)
    return result.body
