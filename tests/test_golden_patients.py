"""Every golden patient reaches its expected outcome through the clinical core."""

from datetime import date

import pytest
from support import golden_bundle, golden_expected, golden_slugs, resources_of

from cds_service.engine import Engine

ENGINE = Engine.build()


def test_there_are_enough_golden_patients() -> None:
    assert len(golden_slugs()) >= 15


@pytest.mark.parametrize("slug", golden_slugs())
def test_golden_patient(slug: str) -> None:
    expected = golden_expected(slug)
    start = date.fromisoformat(expected["start"])
    plan = ENGINE.plan(resources_of(golden_bundle(slug)), start=start, profile=expected["profile"])
    a = plan.assessment
    got = {
        "status": a.status,
        "type": a.type,
        "causes": [c.id for c in a.causes],
        "rules": sorted(plan.rule_ids),
        "regimen": plan.recommended.regimen_id if plan.recommended else None,
        "alternatives": [s.regimen_id for s in plan.alternatives],
        "phases": [p.phase.id for p in plan.recommended.phases] if plan.recommended else [],
        "new_course": a.new_course,
        "lifelong": a.lifelong if plan.recommended else False,
        "unusable": [r.analyte for r in a.unusable],
    }
    assert got == {k: expected[k] for k in got}


@pytest.mark.parametrize("slug", golden_slugs())
def test_golden_bundles_are_valid_fhir(slug: str) -> None:
    from support import assert_valid_fhir

    assert_valid_fhir(golden_bundle(slug))
