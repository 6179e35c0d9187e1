"""Shared test helpers: the golden patients and the official FHIR R4 JSON schema."""

from __future__ import annotations

import json
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from jsonschema import Draft6Validator

from cds_service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PATIENTS = ROOT / "fhir_examples" / "patients"
SCHEMA = Path(__file__).resolve().parent / "schema" / "fhir.schema.json"


def golden_slugs() -> list[str]:
    return sorted(p.stem for p in PATIENTS.glob("*.json") if not p.name.endswith(".expected.json"))


def golden_bundle(slug: str) -> dict[str, Any]:
    return json.loads((PATIENTS / f"{slug}.json").read_text())


def golden_expected(slug: str) -> dict[str, Any]:
    return json.loads((PATIENTS / f"{slug}.expected.json").read_text())


def resources_of(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", [])]


@cache
def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA.read_text())


@cache
def _validator(resource_type: str) -> Draft6Validator:
    # Validating against one definition avoids the schema's oneOf over every resource type,
    # which is slow and reports unreadable errors.
    schema = {"$ref": f"#/definitions/{resource_type}", "definitions": _schema()["definitions"]}
    return Draft6Validator(schema)


def schema_errors(resource: dict[str, Any]) -> list[str]:
    validator = _validator(resource["resourceType"])
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(resource)]


def assert_valid_fhir(resource: dict[str, Any]) -> None:
    """Valid for both the official R4 JSON schema and the fhir.resources R4B model."""
    errors = schema_errors(resource)
    assert not errors, errors
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def isolated_settings(**values: Any) -> Settings:
    """Settings for an app under test: its own database in a fresh temporary directory."""
    values.setdefault("data_dir", tempfile.mkdtemp(prefix="b12-cds-data-"))
    return Settings(**values)
