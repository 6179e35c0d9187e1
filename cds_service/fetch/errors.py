"""The one failure the fetch client reports to the hook layer.

The hook layer owns the type (``cds_service.hooks.prefetch.DataUnavailable``), so there is a
single exception to catch; it is re-exported here for the fetch package's users.

``details`` maps each failed prefetch key to a short reason ("FHIR server answered 401",
"timed out after 2.0 s", ...). The fetcher builds reasons only from fixed phrases, status codes
and its settings: never the access token, URLs, patient ids or server-supplied text, so they are
safe to log and to show on a card.
"""

from __future__ import annotations

from cds_service.hooks.prefetch import DataUnavailable

__all__ = ["DataUnavailable"]
