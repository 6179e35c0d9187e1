"""Strict FHIR R4 validation of the resources the rules read, by a compiled JSON schema.

The schema (`r4_strict.schema.json`, built by `strict_schema.py` from the official R4 schema and
fhir.resources' element metadata) is compiled once, when the process starts, into one
jsonschema-rs validator that dispatches on `resourceType`: a few microseconds per resource where
building the fhir.resources models took tens. It reaches the models' verdicts, and is stricter
where they coerce (README, "Strict validation"). It reports the paths of the invalid elements,
never their values (values are patient data, and jsonschema-rs's own messages quote them).
Instance paths hold only element names R4 defines: an unknown key is reported at its parent.

Memory: through `contained` (any resource type) the schema reaches every R4 definition, and the
whole of it compiled is tens of megabytes per worker. So the validator compiled at start-up
holds only what the resource types the rules read reach without `contained`; each contained
resource is then checked, with the same strict schema, by a validator for its own type,
compiled the first time a resource of that type is met inside another (a few megabytes, once).
The verdicts and the paths (`contained[0].status`) are those of the whole schema.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson

SCHEMA_PATH = Path(__file__).resolve().with_name("r4_strict.schema.json")
#: The definition `contained` items refer to: every resource type, by `resourceType`.
RESOURCE_LIST = "ResourceList"
#: What the start-up validator checks of a contained resource; the rest is checked per type.
_CONTAINED_SHAPE = {"type": "object", "required": ["resourceType"]}


def _refs(value: Any) -> Iterator[str]:
    """The definitions a schema fragment refers to."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref" and isinstance(item, str):
                yield item.rsplit("/", 1)[-1]
            else:
                yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


def _without_contained(root: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """`root` with the definitions it reaches, `contained` items checked for shape only."""
    shallow = {**definitions, RESOURCE_LIST: _CONTAINED_SHAPE}
    reached: set[str] = set()
    todo = list(_refs(root))
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo.extend(_refs(shallow[name]))
    return {**root, "definitions": {name: shallow[name] for name in sorted(reached)}}


class ResourceValidator:
    """One compiled validator for every resource type the rules read (and one per type of
    contained resource met, compiled on first use)."""

    def __init__(self, schema_path: Path = SCHEMA_PATH) -> None:
        schema = orjson.loads(schema_path.read_bytes())
        self._definitions: dict[str, Any] = schema.pop("definitions")
        self._validator = jsonschema_rs.Draft7Validator(
            _without_contained(schema, self._definitions)
        )
        #: Resource types a contained resource may have (the whole schema's ResourceList).
        self._contained_types = frozenset(
            self._definitions[RESOURCE_LIST]["properties"]["resourceType"]["enum"]
        )
        self._by_type: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _for_type(self, resource_type: str) -> Any:
        validator = self._by_type.get(resource_type)
        if validator is None:
            with self._lock:
                validator = self._by_type.get(resource_type)
                if validator is None:
                    root = {"$schema": DRAFT7, "$ref": f"#/definitions/{resource_type}"}
                    validator = jsonschema_rs.Draft7Validator(
                        _without_contained(root, self._definitions)
                    )
                    self._by_type[resource_type] = validator
        return validator

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

    def _paths(self, instance: Any, validator: Any = None) -> list[str]:
        validator = validator or self._validator
        paths: set[str] = set()
        if not validator.is_valid(instance):
            paths = {element_path(e.instance_path) for e in validator.iter_errors(instance)}
        contained = instance.get("contained") if isinstance(instance, dict) else None
        if isinstance(contained, list):
            for i, item in enumerate(contained):
                paths.update(f"contained[{i}]{_tail(p)}" for p in self._contained_paths(item))
        return sorted(paths)

    def _contained_paths(self, item: Any) -> list[str]:
        """A contained resource's paths as the whole schema's ResourceList reports them."""
        if not isinstance(item, dict) or "resourceType" not in item:
            return []  # reported by the shape check already
        kind = item["resourceType"]
        if not isinstance(kind, str) or kind not in self._contained_types:
            return ["resourceType"]
        return self._paths(item, self._for_type(kind))


DRAFT7 = "http://json-schema.org/draft-07/schema#"


def _tail(path: str) -> str:
    """A contained resource's own path, as it reads after `contained[i]`."""
    if path == "(resource)":
        return ""
    return path if path.startswith("[") else f".{path}"


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
