"""$apply's record source reads fetched answers as a hook call reads its prefetch."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence, Set
from typing import Any

import pytest

from cds_service.plan_operation.router import RecordUnavailableError
from cds_service.record_source import FhirRecordSource

BASE = "https://ehr.example.org/fhir"


def _bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in resources],
    }


def _observation(patient: str, oid: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"text": "B12"},
        "subject": {"reference": f"Patient/{patient}"},
    }


class Answers:
    """A fetcher that answers every query from a fixed table, by prefetch key."""

    def __init__(self, answers: Mapping[str, Any]) -> None:
        self.answers = answers

    async def fetch(
        self,
        fhir_server: str | None,
        access_token: str | None,
        queries: Mapping[str, str],
        *,
        allow: Sequence[str] = (),
        optional: Set[str] = frozenset(),
    ) -> dict[str, Any]:
        return {key: self.answers.get(key, _bundle()) for key in queries}


def _read(answers: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    source = FhirRecordSource(Answers(answers), BASE, None)
    return asyncio.run(source("p1"))


def test_the_record_is_what_the_answers_hold_for_this_patient() -> None:
    record = _read(
        {
            "patient": {"resourceType": "Patient", "id": "p1"},
            "observations": _bundle(_observation("p1", "o1")),
        }
    )
    assert {f"{r['resourceType']}/{r['id']}" for r in record} == {"Patient/p1", "Observation/o1"}


def test_another_patients_data_in_a_required_key_makes_the_record_unavailable() -> None:
    answers = {
        "patient": {"resourceType": "Patient", "id": "p1"},
        "observations": _bundle(_observation("p1", "o1"), _observation("p2", "o2")),
    }
    with pytest.raises(RecordUnavailableError, match="observations"):
        _read(answers)


def test_a_wrong_type_in_an_optional_key_is_left_out() -> None:
    record = _read(
        {
            "patient": {"resourceType": "Patient", "id": "p1"},
            "allergies": _bundle(_observation("p1", "o9")),
        }
    )
    assert [f"{r['resourceType']}/{r['id']}" for r in record] == ["Patient/p1"]
