"""Strict FHIR R4 validation of the resources the rules read, by a compiled JSON schema.

The schema (`r4_strict.schema.json`, built by `strict_schema.py` from the official R4 schema and
fhir.resources' element metadata) is compiled once, when the process starts, into one
jsonschema-rs validator that dispatches on `resourceType`: a few microseconds per resource where
building the fhir.resources models took tens. It reaches the models' verdicts, and is stricter
where they coerce (README, "Strict validation"). It reports the paths of the invalid elements,
never their values (values are patient data, and jsonschema-rs's own messages quote them).
Instance paths hold only element names R4 defines: an unknown key is reported at its parent.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson

SCHEMA_PATH = Path(__file__).resolve().with_name("r4_strict.schema.json")


class ResourceValidator:
    """One compiled validator for every resource type the rules read."""

    def __init__(self, schema_path: Path = SCHEMA_PATH) -> None:
        schema = orjson.loads(schema_path.read_bytes())
        self._validator = jsonschema_rs.Draft7Validator(schema)

    def problems(self, resource: Mapping[str, Any]) -> list[str]:
        """The paths of the invalid elements, sorted (empty for a valid resource)."""
        instance = resource if type(resource) is dict else _plain(resource)
        try:
            return self._paths(instance)
        except ValueError:
            # A value that is not JSON (a Mapping or tuple nested in a dict), or nesting past
            # the validator's recursion limit.
            try:
                return self._paths(_plain(resource))
            except (ValueError, RecursionError):
                return ["(resource)"]

    def _paths(self, instance: Any) -> list[str]:
        if self._validator.is_valid(instance):
            return []
        return sorted(
            {element_path(e.instance_path) for e in self._validator.iter_errors(instance)}
        )


def element_path(parts: Any) -> str:
    """`valueQuantity.value`, `component[1].code`: keys and positions, which hold no values."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(resource)"


def _plain(value: Any) -> Any:
    """The same JSON as dicts and lists (records may arrive as read-only Mappings)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@cache
def resource_validator() -> ResourceValidator:
    """The process's validator: compiled on first use, which start-up makes."""
    return ResourceValidator()
