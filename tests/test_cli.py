"""`b12-cds plan`: readable table, JSON output, and one-line errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import PATIENTS, assert_valid_fhir

from cds_service.cli import main

BUNDLE = str(PATIENTS / "t2-pernicious-anemia-d51-0.json")


def test_plan_prints_assessment_evidence_and_schedule(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", BUNDLE, "--start", "2026-12-01"]) == 0
    out = capsys.readouterr().out
    assert "Status:    confirmed" in out and "Pernicious anaemia" in out
    assert "2026-12-01  2026-12-07" in out and "lifelong" in out
    assert "R1" in out and "M1" in out


def test_plan_json_prints_valid_medication_requests(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", BUNDLE, "--start", "2026-12-01", "--json", "--profile", "fda-label"]) == 0
    series = json.loads(capsys.readouterr().out)
    assert len(series) == 4
    for mr in series:
        assert_valid_fhir(mr)
        assert mr["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 100


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "is not JSON"),
        ('{"resourceType": "Patient", "id": "x"}', "is not a FHIR Bundle"),
        (
            '{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": '
            '{"resourceType": "Observation", "status": 12}}]}',
            "not a valid FHIR R4 Bundle",
        ),
    ],
)
def test_bad_input_exits_non_zero_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, reason: str
) -> None:
    path = tmp_path / "in.json"
    path.write_text(content)
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err
    assert reason in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unknown_profile_and_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", BUNDLE, "--profile", "nope"]) == 2
    assert main(["plan", "/nonexistent.json"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 2
