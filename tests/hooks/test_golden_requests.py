"""Every ready-made golden request through HTTP: cards, rules, orders and FHIR validity."""

from __future__ import annotations

from typing import Any

import pytest
from support import assert_valid_fhir, golden_bundle, golden_expected, resources_of

from cds_service.engine import Engine

from .helpers import (
    START,
    app_for,
    assert_card_shape,
    client,
    created_resources,
    golden_request,
    golden_requests,
)

pytestmark = pytest.mark.anyio
ENGINE = Engine.build()
DRAFT_TYPES = ("MedicationRequest", "ServiceRequest")


def _split(slug: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    resources = resources_of(golden_bundle(slug))
    drafts = [r for r in resources if r["resourceType"] in DRAFT_TYPES and r["status"] == "draft"]
    return [r for r in resources if r not in drafts], drafts


def test_every_golden_patient_has_a_request() -> None:
    slugs = {slug for slug, _ in golden_requests()}
    assert len(slugs) >= 15
    for slug, hook in golden_requests():
        if hook == "patient-view":
            continue
        assert hook == "order-sign"
        assert _split(slug)[1], slug


@pytest.mark.parametrize(("slug", "hook"), golden_requests())
async def test_golden_request(slug: str, hook: str) -> None:
    expected = golden_expected(slug)
    body = golden_request(slug, hook)
    async with client(app_for(expected["profile"])) as c:
        response = await c.post(f"/cds-services/b12-{hook}", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    cards = response.json()["cards"]

    record, drafts = _split(slug)
    with_drafts = hook == "order-sign" or not drafts
    plan = ENGINE.plan(
        record,
        start=START,
        profile=expected["profile"],
        draft_orders=drafts if hook == "order-sign" else (),
    )
    if with_drafts:
        assert sorted(plan.rule_ids) == expected["rules"]
    a = plan.assessment

    for card in cards:
        assert_card_shape(card)
        ext = card["extension"]
        assert ext["profile"] == expected["profile"]
        assert ext["protocolVersion"] == ENGINE.protocol.version
        assert card["source"]["topic"]["code"] == expected["profile"]
        for rule in ext["rules"]:
            assert rule in card["detail"]

    # R8 (a draft off the protocol) is decided on the draft orders, after the plan.
    union = sorted({r for card in cards for r in card["extension"]["rules"]} - {"R8"})
    if cards:
        assert union == sorted(plan.rule_ids)
    else:
        # Nothing to act on: no card at all (not deficient, or unknown with no order).
        assert a.status in ("not-deficient", "unknown")
        assert not a.unusable and "D7" not in a.deficiency_rules

    indicators = [c["indicator"] for c in cards]
    if a.status in ("not-deficient", "unknown", "indeterminate"):
        # A warning without a confirmed deficiency: a safety finding, or functional deficiency
        # suspected despite a normal or borderline B12 (D8).
        assert "warning" not in indicators or any(
            c["extension"]["card"].startswith("safety-")
            or c["extension"]["card"] == "functional-deficiency"
            for c in cards
        )
        assert not any(c["extension"]["card"] == "treatment" for c in cards)
    kinds = {c["extension"]["card"] for c in cards}
    new_course = a.new_course and plan.recommended is not None
    if hook == "patient-view":
        # The treatment card, unless the card of a rule that replaces the current therapy (S2,
        # S11) carries the new course instead.
        assert ("treatment" in kinds) == (new_course and a.switch is None)
    else:
        # Order hooks never get the full treatment card; at most the compact one.
        assert "treatment" not in kinds
        assert ("untreated-deficiency" in kinds) <= (new_course and a.switch is None)
    for finding in a.findings:
        card = next(c for c in cards if c["extension"]["card"] == f"safety-{finding.rule.id}")
        assert card["indicator"] == finding.rule.indicator
        assert card["summary"] == finding.rule.summary

    series = ENGINE.medication_requests(plan, requester="Practitioner/example", authored_on=START)
    all_series = list(series.values())
    if new_course and a.switch is not None:
        assert plan.recommended is not None
        carrier = next(c for c in cards if c["extension"]["card"] == f"safety-{a.switch.rule.id}")
        made = created_resources(carrier)[0]
        meds = [r for r in made if r["resourceType"] == "MedicationRequest"]
        assert meds == series[plan.recommended.regimen_id]
    for card in cards:
        for resources in created_resources(card):
            for resource in resources:
                assert_valid_fhir(resource)
            meds = [r for r in resources if r["resourceType"] == "MedicationRequest"]
            if meds:
                assert meds in all_series
        if card["extension"]["card"] == "treatment":
            meds = [
                [r for r in made if r["resourceType"] == "MedicationRequest"]
                for made in created_resources(card)
            ]
            assert meds == [series[s.regimen_id] for s in plan.schedules]
            # The monitoring tests are ordered with whichever schedule is accepted.
            tests = {m.test.code for m in plan.monitoring}
            for made in created_resources(card):
                ordered = {
                    r["code"]["coding"][0]["code"]
                    for r in made
                    if r["resourceType"] == "ServiceRequest"
                }
                assert ordered == tests
            recommended = [s for s in card["suggestions"] if s.get("isRecommended")]
            assert len(recommended) == 1
            assert card["indicator"] == "warning"


def test_expected_cards_for_key_patients() -> None:
    """A few patients, spelled out, so a regression reads as a clinical statement."""
    import asyncio

    async def kinds(slug: str, hook: str = "patient-view") -> list[tuple[str, str]]:
        async with client(app_for(golden_expected(slug)["profile"])) as c:
            r = await c.post(f"/cds-services/b12-{hook}", json=golden_request(slug, hook))
        return [(x["extension"]["card"], x["indicator"]) for x in r.json()["cards"]]

    async def main() -> None:
        assert await kinds("d5-normal-b12") == []
        assert await kinds("d6-no-b12") == []
        assert await kinds("d4-borderline-no-mma") == [("borderline-b12", "info")]
        assert await kinds("d7-very-high-b12") == [("very-high-b12", "info")]
        assert await kinds("t1-inherited-tcii-deficiency") == [("specialist-referral", "warning")]
        assert await kinds("s1-polyneuropathy-metformin") == [
            ("safety-S1", "critical"),
            ("treatment", "warning"),
        ]
        assert await kinds("s4-cobalt-allergy") == [("safety-S4", "critical")]
        assert await kinds("unit-b12-unknown-unit") == [("unusable-results", "info")]
        assert await kinds("draft-b12-order-unknown-status", "order-sign") == [
            ("no-confirmed-deficiency", "info")
        ]
        assert ("safety-S2", "warning") in await kinds("s2-draft-iv-cyanocobalamin", "order-sign")
        assert await kinds("med-b12-nasal-brand-draft-unknown", "order-sign") == [
            ("no-confirmed-deficiency", "info")
        ]

    asyncio.run(main())


async def test_each_schedule_suggestion_orders_the_m_rule_tests_with_it() -> None:
    """Monitoring is part of the treatment card: no card is left over when it is dismissed."""
    body = golden_request("s6-severe-anaemia-hb-7-1", "patient-view")
    async with client() as c:
        cards = (await c.post("/cds-services/b12-patient-view", json=body)).json()["cards"]
    assert not any(c["extension"]["card"] == "monitoring" for c in cards)
    card = next(c for c in cards if c["extension"]["card"] == "treatment")
    recommended = next(s for s in card["suggestions"] if s["isRecommended"])
    orders = [
        a["resource"]
        for a in recommended["actions"]
        if a["resource"]["resourceType"] == "ServiceRequest"
    ]
    assert [o["code"]["coding"][0]["code"] for o in orders] == [
        "17849-1",
        "777-3",
        "14685-2",
        "31444-3",  # M5: no cause on record (T6), intrinsic factor antibody
        "2823-3",
    ]
    assert orders[0]["occurrenceDateTime"] == "2026-12-06"  # day 5 of treatment (M1)
    for order in orders:
        assert_valid_fhir(order)


async def test_iv_draft_is_replaced_by_the_im_series() -> None:
    body = golden_request("s2-draft-iv-cyanocobalamin", "order-sign")
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    async with client() as c:
        cards = (await c.post("/cds-services/b12-order-sign", json=body)).json()["cards"]
    s2 = next(c for c in cards if c["extension"]["card"] == "safety-S2")
    actions = s2["suggestions"][0]["actions"]
    assert actions[0] == {
        "type": "delete",
        "description": f"Remove the draft order MedicationRequest/{draft['id']}",
        "resourceId": f"MedicationRequest/{draft['id']}",
    }
    created = [a["resource"] for a in actions[1:]]
    assert created and all(a["type"] == "create" for a in actions[1:])
    for r in created:
        if r["resourceType"] == "ServiceRequest":
            continue  # the monitoring tests ordered with the series
        route = r["dosageInstruction"][0]["route"]["coding"][0]["code"]
        assert route != "47625008"  # never intravenous


async def test_duplicate_draft_on_therapy_gets_a_delete_suggestion() -> None:
    body = golden_request("s7-duplicate-draft-on-therapy", "order-sign")
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    async with client() as c:
        cards = (await c.post("/cds-services/b12-order-sign", json=body)).json()["cards"]
    s7 = next(c for c in cards if c["extension"]["card"] == "safety-S7")
    assert s7["indicator"] == "info"
    assert s7["suggestions"][0]["actions"] == [
        {
            "type": "delete",
            "description": f"Remove the draft order MedicationRequest/{draft['id']}",
            "resourceId": f"MedicationRequest/{draft['id']}",
        }
    ]


async def test_D8_card_asks_for_mma_and_homocysteine_and_is_never_silent() -> None:
    for slug in ("d8-nitrous-oxide-normal-b12", "d8-neuropathy-borderline-b12"):
        body = golden_request(slug, "patient-view")
        async with client() as c:
            cards = (await c.post("/cds-services/b12-patient-view", json=body)).json()["cards"]
        [card] = [c for c in cards if c["extension"]["card"] == "functional-deficiency"]
        assert card["indicator"] == "warning" and "D8" in card["extension"]["rules"]
        assert "normal in functional B12 deficiency" in card["detail"]
        assert "do not delay treatment" in card["detail"]
        orders = [s["actions"][0]["resource"] for s in card["suggestions"]]
        assert [o["code"]["coding"][0]["code"] for o in orders] == ["13964-2", "13965-9"]
        for order in orders:
            assert_valid_fhir(order)
        assert not any(c["extension"]["card"] == "borderline-b12" for c in cards)
