"""Reading a whole patient record from a FHIR server, for $apply without a `data` Bundle.

It asks the same queries as the CDS Hooks prefetch templates, through the same fallback-fetch
client, so a plan computed from a FHIR server sees exactly what a hook call would.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cds_service.fetch import DataUnavailable
from cds_service.hooks.prefetch import Fetcher
from cds_service.hooks.prefetch_templates import PREFETCH, REQUIRED_KEYS, render
from cds_service.plan_operation.router import RecordUnavailableError


class FhirRecordSource:
    """`await source(patient_id)` -> the patient's resources, or RecordUnavailableError."""

    def __init__(self, fetcher: Fetcher, base_url: str | None, token: str | None) -> None:
        self._fetcher = fetcher
        self._base_url = base_url
        self._token = token

    async def __call__(self, patient_id: str) -> list[Mapping[str, Any]]:
        if not self._base_url:
            raise RecordUnavailableError("CDS_FHIR_BASE_URL is not set")
        queries = {key: render(t, {"patientId": patient_id}) for key, t in PREFETCH.items()}
        try:
            answers = await self._fetcher.fetch(
                self._base_url,
                self._token,
                queries,
                # The operator configured this server explicitly, so it is allowed.
                allow=(self._base_url,),
                optional=frozenset(queries) - set(REQUIRED_KEYS),
            )
        except DataUnavailable as exc:
            raise RecordUnavailableError(", ".join(sorted(exc.details))) from None
        resources: list[Mapping[str, Any]] = []
        for value in answers.values():
            if not isinstance(value, Mapping) or value.get("resourceType") == "OperationOutcome":
                continue
            if value.get("resourceType") == "Bundle":
                resources += [
                    e["resource"] for e in value.get("entry") or () if isinstance(e, Mapping)
                ]
            else:
                resources.append(value)
        return resources
