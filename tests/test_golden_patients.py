"""Every golden patient reaches its expected outcome through the clinical core."""

from datetime import date
from pathlib import Path
from typing import Any

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


PATIENTS_README = Path(__file__).resolve().parents[1] / "fhir_examples" / "patients" / "README.md"


def table_summary(expected: dict[str, Any]) -> tuple[str, str, str]:
    """The profile, outcome and rules columns of the patients README for an expected file."""
    kind = f"{expected['type']} ({', '.join(expected['causes'])})" if expected["type"] else "-"
    if expected["unusable"]:
        kind += f"; unusable: {', '.join(expected['unusable'])}"
    regimen = expected["regimen"] or "no schedule"
    if expected["regimen"]:
        if expected["alternatives"]:
            regimen += f" [alt: {', '.join(expected['alternatives'])}]"
        if expected["lifelong"]:
            regimen += ", lifelong"
        if not expected["new_course"]:
            regimen += ", no new course"
    outcome = f"{expected['status']} / {kind} / {regimen}"
    return expected["profile"], outcome, " ".join(sorted(expected["rules"]))


def test_the_patients_readme_table_says_what_the_expected_files_say() -> None:
    rows = {}
    for line in PATIENTS_README.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0].isdigit():
            rows[cells[1].strip("`")] = (cells[3], cells[4], cells[5])
    assert sorted(rows) == golden_slugs()
    for slug, row in rows.items():
        assert row == table_summary(golden_expected(slug)), slug
