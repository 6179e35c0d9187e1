"""The prefetch templates the services ask for, and the token substitution that fills them.

Only what the rules read is requested. CDS Hooks 2.0 defines prefetch tokens for root-level
primitive context fields (`{{context.patientId}}`, ...) and four user tokens
(`{{userPractitionerId}}`, ...); it has no date token, so the Observation query is filtered by
code only (the most recent result per analyte is picked by the service).

The fallback fetch (`cds_service.fetch`) renders the same templates against the client's FHIR
server when a prefetch key is missing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from cds_service.protocol import Protocol, default_protocol

#: The prefetch keys the rules cannot do without: a 412 when missing and not fetchable.
REQUIRED_KEYS: tuple[str, ...] = ("patient", "conditions", "observations")

#: The resource types each key may hold (besides OperationOutcome). A medication search may
#: carry the Medications its entries reference (`_include=MedicationRequest:medication`,
#: `search.mode` include): the rules read them through `medicationReference`.
KEY_TYPES: dict[str, frozenset[str]] = {
    "patient": frozenset({"Patient"}),
    "conditions": frozenset({"Condition"}),
    "observations": frozenset({"Observation"}),
    "procedures": frozenset({"Procedure"}),
    "medicationRequests": frozenset({"MedicationRequest", "Medication"}),
    "medicationStatements": frozenset({"MedicationStatement", "Medication"}),
    "allergies": frozenset({"AllergyIntolerance"}),
}

USER_TOKENS = (
    "userPractitionerId",
    "userPractitionerRoleId",
    "userPatientId",
    "userRelatedPersonId",
)
_TOKEN = re.compile(r"\{\{\s*([A-Za-z][A-Za-z0-9_.]*)\s*\}\}")


def observation_codes(protocol: Protocol) -> list[str]:
    """`system|code` for every analyte code the protocol reads, in table order, no duplicates."""
    out: list[str] = []
    for analyte in protocol.observations.analytes.values():
        for entry in analyte.codes:
            token = f"{protocol.system_url(entry.system)}|{entry.code}"
            if token not in out:
                out.append(token)
    return out


def build_prefetch(protocol: Protocol) -> dict[str, str]:
    patient = "{{context.patientId}}"
    codes = ",".join(observation_codes(protocol))
    return {
        "patient": f"Patient/{patient}",
        "conditions": f"Condition?patient={patient}&clinical-status=active,recurrence,relapse",
        "observations": f"Observation?patient={patient}&code={codes}",
        "procedures": f"Procedure?patient={patient}&status=completed",
        "medicationRequests": (
            f"MedicationRequest?patient={patient}&status=active,on-hold"
            "&_include=MedicationRequest:medication"
        ),
        "medicationStatements": (
            f"MedicationStatement?patient={patient}&status=active,on-hold"
            "&_include=MedicationStatement:medication"
        ),
        "allergies": f"AllergyIntolerance?patient={patient}&clinical-status=active",
    }


#: Prefetch key -> template, for the packaged protocol.
PREFETCH: dict[str, str] = build_prefetch(default_protocol())


def resource_type_of(key: str) -> str | None:
    """The resource type a prefetch key asks for (`Observation` for `observations`)."""
    template = PREFETCH.get(key)
    return None if template is None else re.split(r"[?/]", template, maxsplit=1)[0]


class UnresolvedTokenError(ValueError):
    """A template names a token the context does not provide (or provides as a non-primitive)."""


def _user_token(name: str, user_id: Any) -> str | None:
    wanted = {
        "userPractitionerId": "Practitioner",
        "userPractitionerRoleId": "PractitionerRole",
        "userPatientId": "Patient",
        "userRelatedPersonId": "RelatedPerson",
    }[name]
    if isinstance(user_id, str) and user_id.count("/") == 1:
        kind, ident = user_id.split("/")
        if kind == wanted and ident:
            return ident
    return None


def render(template: str, context: Mapping[str, Any]) -> str:
    """Replace the prefetch tokens of `template` with values from a hook `context`.

    `{{context.X}}` takes the root-level primitive field X; the user tokens are derived from
    `context.userId` (`Practitioner/123` gives `userPractitionerId` = 123). Values are
    percent-encoded for a query string. Raises UnresolvedTokenError for a token that has no
    value, so no half-filled query is ever sent.
    """

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        found: Any = None
        if name.startswith("context.") and name.count(".") == 1:
            found = context.get(name.split(".", 1)[1])
            if isinstance(found, bool) or not isinstance(found, str | int | float):
                found = None
        elif name in USER_TOKENS:
            found = _user_token(name, context.get("userId"))
        if found is None or str(found) == "":
            raise UnresolvedTokenError(f"prefetch token {{{{{name}}}}} has no value")
        return quote(str(found), safe="")

    return _TOKEN.sub(value, template)
