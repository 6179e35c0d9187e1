"""`b12-cds plan`: readable table, JSON output, and one-line errors on bad input."""

from __future__ import annotations

import io
import json
import subprocess
import sys
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
        ('{"resourceType": "Patient", "id": "x"}', "is neither a FHIR Bundle nor a CDS Hooks"),
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


REQUESTS = Path(__file__).resolve().parents[1] / "fhir_examples" / "requests"
HOOK_REQUEST = str(REQUESTS / "t6-unspecified-low-b12.patient-view.json")


def test_a_cds_hooks_request_is_read_like_a_bundle(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", HOOK_REQUEST, "--start", "2026-12-01"]) == 0
    out = capsys.readouterr().out
    assert "Status:    confirmed" in out and "T6" in out


def test_a_hook_request_without_a_required_key_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = json.loads(Path(HOOK_REQUEST).read_text())
    del body["prefetch"]["patient"]
    path = tmp_path / "request.json"
    path.write_text(json.dumps(body))
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err
    assert "required prefetch missing: patient" in err and len(err.strip().splitlines()) == 1


def test_dash_reads_standard_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(Path(BUNDLE).read_text()))
    assert main(["plan", "-", "--start", "2026-12-01"]) == 0
    assert "Pernicious anaemia" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("{not json"))
    assert main(["plan", "-"]) == 2
    assert "standard input is not JSON" in capsys.readouterr().err


def test_a_closed_pipe_ends_quietly() -> None:
    cli = [sys.executable, "-m", "cds_service.cli", "plan", BUNDLE, "--json"]
    process = subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before the CLI writes
    err = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141
    assert err == ""


def test_an_unexpected_error_is_one_line_without_the_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("Quuxbottom")

    monkeypatch.setattr("cds_service.cli.render", broken)
    assert main(["plan", BUNDLE]) == 70
    err = capsys.readouterr().err
    assert err.startswith("b12-cds: internal error: KeyError at ")
    assert "Quuxbottom" not in err and len(err.strip().splitlines()) == 1
