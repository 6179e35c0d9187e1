"""Build the strict R4 JSON schema the request path validates with (`r4_strict.schema.json`).

The official FHIR R4 JSON schema (vendored in tests/schema/) is looser than R4: complex
elements need not be objects, nothing says a required primitive may be replaced by its `_`
twin, choice elements (`value[x]`) may carry several types, integers are any JSON number and
a date is any string of the right shape. fhir.resources enforces those rules, so the facts
that tighten the schema (which elements exist, which are required, which form a choice, which
primitive type each one has and its integer bounds) are read from its R4B models: the two
cannot drift apart, and an element either of them lacks is refused.

    python -m cds_service.fhir.strict_schema            # rewrite the shipped schema
    python -m cds_service.fhir.strict_schema --check    # exit 1 if it is stale

Needs only the vendored schema and fhir.resources; it runs offline, never at start-up.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from cds_service.clinical.extract import VALIDATED_TYPES

REPO = Path(__file__).resolve().parents[2]
OFFICIAL_SCHEMA = REPO / "tests" / "schema" / "fhir.schema.json"
STRICT_SCHEMA = Path(__file__).resolve().with_name("r4_strict.schema.json")
DRAFT = "http://json-schema.org/draft-07/schema#"
REF = "#/definitions/"


def _ref_schema(definition: str) -> dict[str, Any]:
    return {"$ref": REF + definition}


_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_LEAP_YEAR = r"([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)"
_MONTH_DAY = (
    r"((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)"
    r"|02-(0[1-9]|1[0-9]|2[0-8]))"
)
#: A calendar day: 29 February only in a leap year.
_DAY = rf"({_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
_PARTIAL = rf"{_YEAR}(-(0[1-9]|1[0-2]))?"
#: No leap second: Python's datetime (and so fhir.resources) has none.
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?"
_ZONE = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"

#: Primitive types whose official definition is replaced (the others keep type and pattern).
_TIGHTENED: dict[str, dict[str, Any]] = {
    "boolean": {"type": "boolean"},
    "decimal": {"type": "number"},
    "date": {"type": "string", "pattern": rf"^({_PARTIAL}|{_DAY})$"},
    "dateTime": {"type": "string", "pattern": rf"^({_PARTIAL}|{_DAY}(T{_TIME}{_ZONE})?)$"},
    "instant": {"type": "string", "pattern": rf"^{_DAY}T{_TIME}{_ZONE}$"},
    "time": {"type": "string", "pattern": rf"^{_TIME}$"},
    "xhtml": {"type": "string", "pattern": r"\S"},
    # fhir.resources reads a uuid as a version-4 UUID.
    "uuid": {
        "type": "string",
        "pattern": "^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$",
    },
    # The official schema has no pattern; fhir.resources decodes the value.
    "base64Binary": {
        "type": "string",
        "pattern": r"^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
    },
}
_INTEGER_TYPES = ("integer", "positiveInt", "unsignedInt")

#: The `_` twin of a primitive element (`_status`). fhir.resources' FHIRPrimitiveExtension
#: refuses one with neither an id nor extensions (a model validator, not element metadata).
PRIMITIVE_EXTENSION = "PrimitiveExtension"
_PRIMITIVE_EXTENSION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "id": _ref_schema("string"),
        "extension": {"type": "array", "items": _ref_schema("Extension")},
    },
    "anyOf": [{"required": ["id"]}, {"required": ["extension"]}],
}


class _Element(typing.NamedTuple):
    """What fhir.resources says one element of a model holds."""

    kind: str  # "primitive", "complex", "resource" or "extension" (a `_` twin)
    name: str  # the primitive's FHIR type or the complex model's class name
    repeats: bool
    null_items: bool
    bounds: tuple[int, int] | None


def _unwrap_optional(annotation: Any) -> Any:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, getattr(typing, "UnionType", None)) or (
        args and type(None) in args and not hasattr(annotation, "__metadata__")
    ):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _is_optional(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation)


def _element(field_name: str, info: FieldInfo) -> _Element:
    annotation = _unwrap_optional(info.annotation)
    repeats = typing.get_origin(annotation) is list
    null_items = False
    if repeats:
        (item,) = typing.get_args(annotation)
        null_items = _is_optional(item)
        annotation = _unwrap_optional(item)
    if field_name.endswith("__ext"):
        return _Element("extension", "Element", repeats, null_items, None)
    if annotation is bool:
        return _Element("primitive", "boolean", repeats, null_items, None)
    metadata = getattr(annotation, "__metadata__", ())
    if metadata and typing.get_args(annotation)[0] is uuid.UUID:
        return _Element("primitive", "uuid", repeats, null_items, None)
    if metadata and not any(type(m).__module__ == "fhir_core.types" for m in metadata):
        raise ValueError(f"{field_name}: no FHIR primitive type in {info.annotation!r}")
    markers = [m for m in metadata if type(m).__module__ == "fhir_core.types"]
    if markers:
        marker = markers[-1]
        kind = type(marker).__name__
        low, high = getattr(marker, "min_length", None), getattr(marker, "max_length", None)
        bounds = (int(low), int(high)) if low is not None and high is not None else None
        return _Element("primitive", kind[0].lower() + kind[1:], repeats, null_items, bounds)
    name = getattr(annotation, "__name__", "")
    if getattr(annotation, "__module__", "") == "abc" and name.endswith("Type"):
        model = name[: -len("Type")]
        kind = "resource" if model == "Resource" else "complex"
        return _Element(kind, model, repeats, null_items, None)
    raise ValueError(f"{field_name}: cannot tell the FHIR type of {info.annotation!r}")


def _model_fields(model: type[BaseModel]) -> dict[str, tuple[str, FieldInfo]]:
    """FHIR element name (the JSON key) -> (field name, field) for every element of a model."""
    out: dict[str, tuple[str, FieldInfo]] = {}
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if name.endswith("__ext") or extra.get("element_property") is True:
            out[info.alias or name] = (name, info)
    return out


def _extra(info: FieldInfo) -> dict[str, Any]:
    return info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}


_ref = _ref_schema


def _dispatch(types: list[str]) -> dict[str, Any]:
    """One schema for several resource types, chosen by `resourceType` (no oneOf scan)."""
    return {
        "type": "object",
        "required": ["resourceType"],
        "properties": {"resourceType": {"enum": types}},
        "allOf": [
            {"if": {"properties": {"resourceType": {"const": t}}}, "then": _ref(t)} for t in types
        ],
    }


class _Builder:
    def __init__(self, official: dict[str, Any]) -> None:
        self.official: dict[str, Any] = official["definitions"]
        self.out: dict[str, Any] = {}
        self.primitives: dict[str, tuple[int, int] | None] = {}
        self.queue: list[tuple[str, type[BaseModel]]] = []
        self.resources = sorted(self._shared_resource_types(official))

    def _shared_resource_types(self, official: dict[str, Any]) -> Iterator[str]:
        """R4 resource types that fhir.resources (R4B) also has: a contained resource of a
        type it lacks is refused by it, so the strict schema refuses it too."""
        for name in official["discriminator"]["mapping"]:
            try:
                get_fhir_model_class(name)
            except (KeyError, ValueError, LookupError, ImportError, AttributeError):
                continue
            yield name

    def build(self) -> dict[str, Any]:
        for name in self.resources:
            self.queue.append((name, get_fhir_model_class(name)))
        while self.queue:
            definition, model = self.queue.pop()
            if definition not in self.out:
                self.out[definition] = {}  # reserved: recursive types reach themselves
                self.out[definition] = self._complex(definition, model)
        for name, bounds in sorted(self.primitives.items(), key=lambda kv: kv[0]):
            self.out[name] = self._primitive(name, bounds)
        self.out["ResourceList"] = _dispatch(self.resources)
        self.out[PRIMITIVE_EXTENSION] = _PRIMITIVE_EXTENSION_SCHEMA
        validated = [t for t in VALIDATED_TYPES if t in self.resources]
        return {
            "$schema": DRAFT,
            "$comment": (
                "Generated by cds_service/fhir/strict_schema.py from the official FHIR R4 JSON "
                "schema and the fhir.resources R4B element metadata; do not edit."
            ),
            **_dispatch(validated),
            "definitions": dict(sorted(self.out.items())),
        }

    def _primitive(self, name: str, bounds: tuple[int, int] | None) -> dict[str, Any]:
        if name in _INTEGER_TYPES:
            if bounds is None:
                raise ValueError(f"{name}: fhir.resources gives no bounds")
            return {"type": "integer", "minimum": bounds[0], "maximum": bounds[1]}
        if name in _TIGHTENED:
            return dict(_TIGHTENED[name])
        official = self.official[name]
        kept = {k: official[k] for k in ("type", "pattern") if k in official}
        if "type" not in kept:
            raise ValueError(f"{name}: the official schema gives it no JSON type")
        return kept

    def _item(self, element: _Element, official: dict[str, Any]) -> dict[str, Any]:
        if element.kind == "extension":
            self._enqueue("Extension", "Extension")
            self.primitives.setdefault("string", None)
            schema = _ref(PRIMITIVE_EXTENSION)
        elif element.kind == "resource":
            schema = _ref("ResourceList")
        elif element.kind == "primitive":
            if element.name not in self.official:
                raise ValueError(f"{element.name}: not an R4 primitive type")
            self.primitives.setdefault(element.name, element.bounds)
            enum = official.get("enum") or official.get("items", {}).get("enum")
            schema = {"enum": enum} if enum else _ref(element.name)
        else:
            target = official.get("$ref") or official.get("items", {}).get("$ref")
            if not target:
                raise ValueError(f"{element.name}: the official schema has no definition for it")
            definition = target.removeprefix(REF)
            self._enqueue(definition, element.name)
            schema = _ref(definition)
        if element.null_items:
            schema = {"anyOf": [{"type": "null"}, schema]}
        return {"type": "array", "items": schema} if element.repeats else schema

    def _enqueue(self, definition: str, model_name: str) -> None:
        if definition not in self.out:
            self.queue.append((definition, get_fhir_model_class(model_name)))

    def _complex(self, definition: str, model: type[BaseModel]) -> dict[str, Any]:
        official = self.official[definition]
        official_props: dict[str, Any] = official.get("properties", {})
        fields = _model_fields(model)
        properties: dict[str, Any] = {}
        required: list[str] = []
        constraints: list[dict[str, Any]] = []
        choices: dict[str, tuple[bool, list[str]]] = {}
        for key, prop in official_props.items():
            if key == "resourceType":
                properties[key] = {"const": definition}
                required.append(key)
                continue
            if key not in fields:
                continue  # R4 only: fhir.resources refuses it, so does the strict schema
            field_name, info = fields[key]
            properties[key] = self._item(_element(field_name, info), prop)
            extra = _extra(info)
            if info.is_required():
                required.append(key)
            elif extra.get("element_required") is True:
                constraints.append(self._required_primitive(key, "_" + key in official_props))
            if "one_of_many" in extra:
                group = choices.setdefault(
                    str(extra["one_of_many"]), (extra.get("one_of_many_required") is True, [])
                )
                group[1].append(key)
        for is_required, keys in choices.values():
            constraints.append(_choice(keys, is_required))
        out: dict[str, Any] = {"type": "object", "additionalProperties": False}
        out["properties"] = properties
        if required:
            out["required"] = required
        if constraints:
            out["allOf"] = constraints
        return out

    @staticmethod
    def _required_primitive(key: str, has_twin: bool) -> dict[str, Any]:
        """A required primitive may be absent when its `_` twin carries an extension."""
        present: dict[str, Any] = {"required": [key]}
        if not has_twin:
            return present
        twin = {
            "required": ["_" + key],
            "properties": {
                "_" + key: {"required": ["extension"], "properties": {"extension": {"minItems": 1}}}
            },
        }
        return {"anyOf": [present, twin]}


def _choice(keys: list[str], is_required: bool) -> dict[str, Any]:
    """A choice element carries one type: exactly one key, or at most one if optional."""
    one = {"oneOf": [{"required": [k]} for k in keys]}
    if is_required:
        return one
    return {"anyOf": [{"not": {"anyOf": [{"required": [k]} for k in keys]}}, one]}


def build(official_path: Path = OFFICIAL_SCHEMA) -> dict[str, Any]:
    official = json.loads(official_path.read_text(encoding="utf-8"))
    return _Builder(official).build()


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the shipped schema is stale"
    )
    args = parser.parse_args(argv)
    text = render(build())
    if args.check:
        if STRICT_SCHEMA.read_text(encoding="utf-8") != text:
            print(f"{STRICT_SCHEMA} is stale: run python -m cds_service.fhir.strict_schema")
            return 1
        return 0
    STRICT_SCHEMA.write_text(text, encoding="utf-8")
    print(f"wrote {STRICT_SCHEMA} ({len(text) // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
