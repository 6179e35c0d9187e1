"""Lenient reading of draft orders: the fields the rules read, each checked for its JSON type.

EHRs send draft orders that are not valid FHIR (the CDS Hooks sandbox gives
`MedicationRequest.category` as an object, R4 wants an array). Refusing the whole call would
show the clinician "all clear", so a draft is read for exactly the fields the rules use, and
only when each of those has the type FHIR gives it. A draft whose read fields are not so is
named on a card as not checked, with the element path (never the value).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cds_service.clinical.raw import OBJECT

_STRING = "string"
_NUMBER = "number"
_INTEGER = "integer"

# Element -> its type: a primitive name, a nested spec (an object), or [spec] (an array of it).
_CODING = {"system": _STRING, "code": _STRING, "display": _STRING}
_CONCEPT = {"coding": [_CODING], "text": _STRING}
_REFERENCE = {"reference": _STRING, "type": _STRING, "display": _STRING}
_QUANTITY = {"value": _NUMBER, "unit": _STRING, "code": _STRING, "system": _STRING}
_REPEAT = {
    "frequency": _INTEGER,
    "frequencyMax": _INTEGER,
    "period": _NUMBER,
    "periodMax": _NUMBER,
    "periodUnit": _STRING,
    "count": _INTEGER,
}
_DOSAGE = {
    "text": _STRING,
    "route": _CONCEPT,
    "timing": {"repeat": _REPEAT},
    "doseAndRate": [{"doseQuantity": _QUANTITY}],
}
#: The fields of a draft the extractor and the cards read.
SPECS: Mapping[str, Mapping[str, Any]] = {
    "MedicationRequest": {
        "id": _STRING,
        "status": _STRING,
        "subject": _REFERENCE,
        "medicationCodeableConcept": _CONCEPT,
        "medicationReference": _REFERENCE,
        "authoredOn": _STRING,
        "dosageInstruction": [_DOSAGE],
        "priorPrescription": _REFERENCE,
    },
    "ServiceRequest": {
        "id": _STRING,
        "status": _STRING,
        "subject": _REFERENCE,
        "code": _CONCEPT,
        "authoredOn": _STRING,
    },
}


def _primitive_ok(kind: str, value: Any) -> bool:
    if kind == _STRING:
        return isinstance(value, str)
    if isinstance(value, bool):
        return False
    if kind == _INTEGER:
        return isinstance(value, int)
    return isinstance(value, int | float)


def _problem(spec: Any, value: Any, path: str) -> str | None:
    if isinstance(spec, str):
        return None if _primitive_ok(spec, value) else f"{path} is not a {spec}"
    if isinstance(spec, list):
        if not isinstance(value, list):
            return f"{path} is not an array"
        for index, item in enumerate(value):
            found = _problem(spec[0], item, f"{path}[{index}]")
            if found:
                return found
        return None
    if not isinstance(value, OBJECT):
        return f"{path} is not an object"
    for name, inner in spec.items():
        if name in value and value[name] is not None:
            found = _problem(inner, value[name], f"{path}.{name}" if path else name)
            if found:
                return found
    return None


def unreadable_field(resource: Mapping[str, Any]) -> str | None:
    """Why a draft cannot be read (`dosageInstruction[0].timing.repeat.period is not a number`),
    or None when every field the rules read has its FHIR type; fields they do not read, such
    as `category`, are not looked at."""
    spec = SPECS.get(str(resource.get("resourceType")))
    if spec is None:
        return None
    return _problem(spec, resource, "")
