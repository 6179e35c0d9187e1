"""Fallback FHIR fetch: what the hook layer calls when the EHR's prefetch is missing or partial.

Typical wiring in the app layer::

    allowlist = Allowlist.from_env(auth_enabled, os.environ.get(ENV_VAR))
    fetcher = FhirFetcher(allowlist)          # one per app; ``await fetcher.aclose()`` on shutdown
    data = await fetcher.fetch(request.fhirServer, token, missing_queries,
                               allow=client.fhir_servers, optional=optional_keys)

``fetch`` raises ``DataUnavailable`` (``.details``: key -> reason) when a required key fails;
a failed optional key comes back as an OperationOutcome (``unavailable_reason`` reads it).
"""

from .allowlist import ENV_VAR, Allowlist, is_loopback_host, is_under
from .client import (
    DEFAULT_DEADLINE,
    DEFAULT_MAX_PAGES,
    DEFAULT_TIMEOUT,
    FhirFetcher,
    parse_query,
    unavailable_outcome,
)
from .errors import DataUnavailable, unavailable_reason

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_PAGES",
    "DEFAULT_TIMEOUT",
    "ENV_VAR",
    "Allowlist",
    "DataUnavailable",
    "FhirFetcher",
    "is_loopback_host",
    "is_under",
    "parse_query",
    "unavailable_outcome",
    "unavailable_reason",
]
