"""Facts from FHIR: only what the rules read is validated, and invalid FHIR is named."""

from __future__ import annotations

from datetime import date

import pytest
from records import Record

from cds_service.clinical.extract import InvalidResourceError
from cds_service.engine import Engine

ENGINE = Engine.build()


def test_only_the_latest_result_per_analyte_is_validated() -> None:
    record = Record().b12(400, when="2026-10-01")
    record.b12(90, when="2025-01-01")
    record.resources[-1]["valueQuantity"]["value"] = "not a number"  # superseded, never read
    plan = ENGINE.plan(record.resources, start=date(2026, 12, 1))
    assert plan.assessment.status == "not-deficient"


def test_invalid_latest_result_is_rejected_by_reference() -> None:
    record = Record().b12(90, when="2026-10-01")
    record.resources[-1]["valueQuantity"]["value"] = "not a number"
    with pytest.raises(InvalidResourceError, match=r"Observation/obs-1 is not valid FHIR R4"):
        ENGINE.plan(record.resources, start=date(2026, 12, 1))


def test_resources_no_rule_reads_are_not_validated() -> None:
    record = Record().b12(90)
    record.resources.append({"resourceType": "Condition", "id": "c9", "code": {"text": 12}})
    assert ENGINE.plan(record.resources, start=date(2026, 12, 1)).assessment.status == "confirmed"
