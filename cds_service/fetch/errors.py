"""The one failure the fetch client reports to the hook layer.

The hook layer owns the contract (``cds_service.hooks.prefetch``: the exception and how an
OperationOutcome stands in for an optional key), so there is one definition of each; they are
re-exported here for the fetch package's users.

``details`` maps each failed prefetch key to a short reason ("FHIR server answered 401",
"timed out after 2.0 s", ...). The fetcher builds reasons only from fixed phrases, status codes
and its settings: never the access token, URLs, patient ids or server-supplied text, so they are
safe to log and to show on a card.
"""

from __future__ import annotations

from cds_service.hooks.prefetch import INVALID_FETCHED, DataUnavailable, unavailable_reason

__all__ = ["INVALID_FETCHED", "DataUnavailable", "unavailable_reason"]
