"""Regenerate the ready-made CDS Hooks requests from the golden patient bundles.

    python fhir_examples/requests/build.py

For every `fhir_examples/patients/<slug>.json` this writes `<slug>.patient-view.json`, and for
patients with draft orders (`status: draft`) also `<slug>.order-sign.json` with the drafts in
`context.draftOrders`. Drafts are never in the prefetch: the prefetch templates ask for active /
on-hold medication orders only, and a client must send what the templates would return. Every
other resource goes under the key of its type (a superset of the template's filter, like a
server that ignores the status parameters), so the noise records still reach the rules. A
Medication goes where the orders that reference it go: into `draftOrders` beside a draft, or
into the medication key as an included entry (`search.mode` include), as a server answering
`_include=MedicationRequest:medication` returns it.
hookInstance values are derived from the slug, so regenerating gives identical files.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PATIENTS = HERE.parent / "patients"
FHIR_SERVER = "https://ehr.example.org/fhir"
USER = "Practitioner/example"
NAMESPACE = uuid.UUID("0b6f3a52-6c1e-4d0e-9a57-3f1d5b2c8e41")
KEY_OF = {
    "Patient": "patient",
    "Condition": "conditions",
    "Observation": "observations",
    "Procedure": "procedures",
    "MedicationRequest": "medicationRequests",
    "MedicationStatement": "medicationStatements",
    "AllergyIntolerance": "allergies",
}
DRAFT_TYPES = ("MedicationRequest", "ServiceRequest")


def searchset(
    resources: list[dict[str, Any]], included: list[dict[str, Any]] | None = None
) -> dict[str, Any] | None:
    if not resources:
        return None  # CDS Hooks: a key with no data is null
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {
                "fullUrl": f"{FHIR_SERVER}/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": mode},
            }
            for rs, mode in ((resources, "match"), (included or [], "include"))
            for r in rs
        ],
    }


def _references(resource: dict[str, Any], medication: dict[str, Any]) -> bool:
    ref = (resource.get("medicationReference") or {}).get("reference")
    return ref == f"Medication/{medication['id']}"


def requests_for(slug: str, bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    resources = [e["resource"] for e in bundle["entry"]]
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    drafts = [r for r in resources if r["resourceType"] in DRAFT_TYPES and r["status"] == "draft"]
    by_key: dict[str, list[dict[str, Any]]] = {k: [] for k in KEY_OF.values() if k != "patient"}
    included: dict[str, list[dict[str, Any]]] = {k: [] for k in by_key}
    for r in resources:
        key = KEY_OF.get(r["resourceType"])
        if key and key != "patient" and r not in drafts:
            by_key[key].append(r)
    medications = [r for r in resources if r["resourceType"] == "Medication"]
    draft_medications = [m for m in medications if any(_references(d, m) for d in drafts)]
    for m in medications:
        for key, records in by_key.items():
            if any(_references(r, m) for r in records):
                included[key].append(m)
    prefetch: dict[str, Any] = {"patient": patient}
    prefetch.update({k: searchset(v, included[k]) for k, v in by_key.items()})
    context = {"userId": USER, "patientId": patient["id"]}

    def request(hook: str, ctx: dict[str, Any]) -> dict[str, Any]:
        return {
            "hookInstance": str(uuid.uuid5(NAMESPACE, f"{slug}/{hook}")),
            "fhirServer": FHIR_SERVER,
            "hook": hook,
            "context": ctx,
            "prefetch": prefetch,
        }

    out = {"patient-view": request("patient-view", context)}
    if drafts:
        draft_bundle = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": r} for r in drafts + draft_medications],
        }
        out["order-sign"] = request("order-sign", {**context, "draftOrders": draft_bundle})
    return out


def main() -> None:
    for old in HERE.glob("*.*.json"):
        old.unlink()
    count = 0
    for path in sorted(PATIENTS.glob("*.json")):
        if path.name.endswith(".expected.json"):
            continue
        slug = path.stem
        for hook, body in requests_for(slug, json.loads(path.read_text())).items():
            (HERE / f"{slug}.{hook}.json").write_text(json.dumps(body, indent=2) + "\n")
            count += 1
    print(f"wrote {count} requests to {HERE}")


if __name__ == "__main__":
    main()
