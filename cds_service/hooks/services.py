"""The three CDS services and their discovery entries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cds_service.hooks.prefetch_templates import PREFETCH, REQUIRED_KEYS


@dataclass(frozen=True)
class Service:
    id: str
    hook: str
    title: str
    description: str

    def discovery(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "hook": self.hook,
            "title": self.title,
            "description": self.description,
            "prefetch": dict(PREFETCH),
            "usageRequirements": USAGE,
        }


USAGE = (
    "Needs the prefetch keys "
    + ", ".join(REQUIRED_KEYS)
    + " (or FHIR access so the service can fetch them); without them it answers 412. "
    "The other keys are used when given; without them cards say what was not checked. "
    "Adult patients only (18 and over)."
)

SERVICES: dict[str, Service] = {
    s.id: s
    for s in (
        Service(
            "b12-patient-view",
            "patient-view",
            "Vitamin B12 deficiency: treatment plan",
            "Decides whether vitamin B12 deficiency is confirmed, its type and severity, and "
            "proposes the injection schedule as MedicationRequests, with safety warnings.",
        ),
        Service(
            "b12-order-select",
            "order-select",
            "Vitamin B12 orders: protocol check (order-select)",
            "Checks vitamin B12 and folic acid orders as they are selected against the patient's "
            "B12 status and the protocol (route, dose, duplicates), and proposes the protocol "
            "schedule.",
        ),
        Service(
            "b12-order-sign",
            "order-sign",
            "Vitamin B12 orders: protocol check (order-sign)",
            "Checks vitamin B12 and folic acid orders before signing against the patient's B12 "
            "status and the protocol (route, dose, duplicates), and proposes the protocol "
            "schedule.",
        ),
    )
}
