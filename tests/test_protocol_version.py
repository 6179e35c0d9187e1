"""The protocol version comes from the tables and every answer names it with the profile's.

Governance reads a card or an audit record and must be able to say which version of which
profile produced it, so no test hard-codes a version: each reads it from protocol.yaml and
profiles.yaml, and a bump there is all it takes to re-version every answer.
"""

from __future__ import annotations

from datetime import date

import pytest
from answers import answer
from support import golden_bundle, golden_expected, golden_slugs, resources_of

from cds_service.engine import Engine
from cds_service.fhir.guidance_response import plan_parameters

ENGINE = Engine.build()
PROTOCOL = ENGINE.protocol
DRAFT_TYPES = ("MedicationRequest", "ServiceRequest")


def semver(version: str) -> tuple[int, int, int]:
    major, minor, patch = (int(part) for part in version.split("."))
    return major, minor, patch


def test_the_protocol_version_is_semver_and_past_the_first_release() -> None:
    """The second pass changed rules, codes and thresholds: a minor bump from 1.0.0 at least."""
    assert semver(PROTOCOL.version) >= (1, 1, 0)
    assert semver(PROTOCOL.version)[0] == 1


def test_no_table_or_profile_is_versioned_above_the_protocol() -> None:
    tables = (
        PROTOCOL.codes,
        PROTOCOL.observations,
        PROTOCOL.rules,
        PROTOCOL.regimens,
        PROTOCOL.profiles,
        PROTOCOL.sources,
    )
    versions = [t.version for t in tables] + [
        p.version for p in PROTOCOL.profiles.profiles.values()
    ]
    for version in versions:
        assert semver(version) <= semver(PROTOCOL.version)


@pytest.mark.parametrize("slug", golden_slugs())
def test_every_card_and_audit_names_profile_and_versions(slug: str) -> None:
    expected = golden_expected(slug)
    name = expected["profile"]
    profile = PROTOCOL.profile(name)
    resources = resources_of(golden_bundle(slug))
    drafts = [r for r in resources if r["resourceType"] in DRAFT_TYPES and r["status"] == "draft"]
    rest = [r for r in resources if r not in drafts]
    start = date.fromisoformat(expected["start"])
    for hook, draft_orders in (("patient-view", []), ("order-sign", drafts)):
        for card in answer(
            ENGINE, rest, start=start, hook=hook, profile=name, draft_orders=draft_orders
        ):
            topic = card["source"]["topic"]
            assert topic["code"] == name
            assert f"{name} v{profile.version}" in topic["display"]
            assert f"protocol {PROTOCOL.version}" in topic["display"]
            ext = card["extension"]
            assert (ext["profile"], ext["profileVersion"]) == (name, profile.version)
            assert ext["protocolVersion"] == PROTOCOL.version
            assert PROTOCOL.version in card["detail"]
    plan = ENGINE.plan(resources, start=start, profile=name)
    audit = {p["name"]: p for p in plan_parameters(plan, PROTOCOL) if "valueString" in p}
    assert audit["protocolVersion"]["valueString"] == PROTOCOL.version
    assert audit["profile"]["valueString"] == name
    assert audit["profileVersion"]["valueString"] == profile.version
