"""The clinical pipeline in one call: FHIR resources -> facts -> assessment -> plan.

Every entry point (CDS Hooks, $apply, the CLI) goes through here, so the answers cannot drift
apart. Built once per process; each call is pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from cds_service.clinical.assessment import Assessor
from cds_service.clinical.extract import FactExtractor
from cds_service.clinical.regimen import Plan, Planner
from cds_service.fhir.medication_requests import MedicationRequestWriter, OrderContext
from cds_service.protocol import Protocol, default_protocol


@dataclass
class Engine:
    protocol: Protocol
    extractor: FactExtractor
    assessor: Assessor
    planner: Planner
    writer: MedicationRequestWriter

    @classmethod
    def build(cls, protocol: Protocol | None = None) -> Engine:
        protocol = protocol or default_protocol()
        return cls(
            protocol,
            FactExtractor(protocol),
            Assessor(protocol),
            Planner(protocol),
            MedicationRequestWriter(protocol),
        )

    def plan(
        self,
        resources: Iterable[Mapping[str, Any]],
        *,
        start: date,
        profile: str | None = None,
        patient_id: str | None = None,
        draft_orders: Iterable[Mapping[str, Any]] = (),
        base_url: str | None = None,
        full_urls: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Plan:
        """`base_url` and `full_urls` resolve references between the record's resources
        (a `medicationReference` to a Medication of the prefetch or of a Bundle)."""
        facts = self.extractor.extract(
            resources,
            patient_id=patient_id,
            draft_orders=draft_orders,
            today=start,
            base_url=base_url,
            full_urls=full_urls,
        )
        assessment = self.assessor.assess(facts, day=start, profile=profile)
        return self.planner.plan(assessment, start=start)

    def medication_requests(
        self,
        plan: Plan,
        *,
        requester: str | None = None,
        encounter: str | None = None,
        authored_on: date | None = None,
        templated: bool = False,
    ) -> dict[str, list[dict[str, Any]]]:
        """The series of every schedule in the plan, keyed by regimen id; `templated` for an
        answer that is only serialised with orjson (cds_service.fhir.medication_requests)."""
        patient = plan.assessment.facts.patient_reference or "Patient/unknown"
        ctx = OrderContext(patient, authored_on or plan.start, requester, encounter)
        if not plan.schedules:
            return {}
        reasons = self.writer.reason_codes(plan.assessment)
        return {
            s.regimen_id: self.writer.series(
                s, plan.assessment, ctx, templated=templated, reasons=reasons
            )
            for s in plan.schedules
        }


def bundle_resources(bundle: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The resources of a Bundle's entries (entries without a resource are skipped)."""
    return [
        e["resource"]
        for e in bundle.get("entry") or ()
        if isinstance(e, Mapping) and isinstance(e.get("resource"), Mapping)
    ]
