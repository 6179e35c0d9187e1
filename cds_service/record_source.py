"""Reading a whole patient record from a FHIR server, for $apply without a `data` Bundle.

It asks the same queries as the CDS Hooks prefetch templates, through the same fallback-fetch
client, and reads the answers with the same `resources_of`, so a plan computed from a FHIR
server sees what a hook call would. An optional key that fails is left out (a CarePlan has no
place to say what was not checked); a required one makes the record unavailable.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from cds_service.fetch import DataUnavailable
from cds_service.hooks.fetched_pages import FetchedPages
from cds_service.hooks.prefetch import (
    INVALID_FETCHED,
    Fetcher,
    PrefetchError,
    RecordScope,
    resources_of,
)
from cds_service.hooks.prefetch_templates import PREFETCH, REQUIRED_KEYS, render
from cds_service.offload.pool import ReaderPool
from cds_service.plan_operation.router import RecordUnavailableError


class FhirRecordSource:
    """`await source(patient_id, start)` -> the patient's resources, or RecordUnavailableError."""

    def __init__(
        self,
        fetcher: Fetcher,
        base_url: str | None,
        token: str | None,
        *,
        reader: ReaderPool | None = None,
    ) -> None:
        self._fetcher = fetcher
        self._base_url = base_url
        self._token = token
        self._reader = reader

    async def __call__(self, patient_id: str, start: date | None = None) -> list[Mapping[str, Any]]:
        """`start` (the plan's start date) lets `reader` read large search pages off the event
        loop, cut down to what the rules read on that day (cds_service.hooks.fetched_pages)."""
        if not self._base_url:
            raise RecordUnavailableError(
                "CDS_FHIR_BASE_URL is not set, so no FHIR server is configured to read the "
                "record from: give the record as 'data'"
            )
        queries = {key: render(t, {"patientId": patient_id}) for key, t in PREFETCH.items()}
        scope = RecordScope(base_url=self._base_url)
        extra: dict[str, Any] = {}
        if self._reader is not None and start is not None:
            extra["pages"] = FetchedPages(self._reader, patient_id, scope, start)
        try:
            answers = await self._fetcher.fetch(
                self._base_url,
                self._token,
                queries,
                # The operator configured this server explicitly, so it is allowed.
                allow=(self._base_url,),
                optional=frozenset(queries) - set(REQUIRED_KEYS),
                **extra,
            )
        except DataUnavailable as exc:
            raise RecordUnavailableError(
                "; ".join(f"{key}: {exc.details[key]}" for key in sorted(exc.details)),
                exc.details,
            ) from None
        # Read as a hook call reads the same answers: right types per key, this patient only.
        resources: list[Mapping[str, Any]] = []
        for key, value in answers.items():
            try:
                found = resources_of(key, value, patient_id, scope)
            except PrefetchError:
                if key in REQUIRED_KEYS:
                    raise RecordUnavailableError(
                        f"{key}: {INVALID_FETCHED}", {key: INVALID_FETCHED}
                    ) from None
                continue
            resources += found or ()
        return resources
