"""No answer holds two cards that contradict each other (protocol section 8, "Cards per hook")."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from answers import answer, contradictions
from support import golden_bundle, golden_expected, golden_slugs, resources_of

from cds_service.engine import Engine

ENGINE = Engine.build()
DRAFT_TYPES = ("MedicationRequest", "ServiceRequest")


def _split(slug: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    resources = resources_of(golden_bundle(slug))
    drafts = [r for r in resources if r["resourceType"] in DRAFT_TYPES and r["status"] == "draft"]
    return [r for r in resources if r not in drafts], drafts


@pytest.mark.parametrize("slug", golden_slugs())
@pytest.mark.parametrize("hook", ["patient-view", "order-select", "order-sign"])
def test_no_two_cards_of_a_golden_answer_contradict(slug: str, hook: str) -> None:
    expected = golden_expected(slug)
    record, drafts = _split(slug)
    cards = answer(
        ENGINE,
        record,
        start=date.fromisoformat(expected["start"]),
        hook=hook,
        profile=expected["profile"],
        draft_orders=drafts if hook != "patient-view" else (),
    )
    assert contradictions(cards) == []


def test_the_contradiction_check_catches_what_it_names() -> None:
    """The check itself must be able to fail: hand-made pairs it must flag."""
    course = {
        "summary": "start",
        "detail": "",
        "indicator": "warning",
        "extension": {"card": "treatment"},
        "suggestions": [
            {
                "isRecommended": True,
                "actions": [
                    {
                        "type": "create",
                        "resource": {
                            "resourceType": "MedicationRequest",
                            "dosageInstruction": [{"route": {"coding": [{"code": "26643006"}]}}],
                        },
                    }
                ],
            }
        ],
    }
    quiet = {
        "summary": "B12 therapy already active: no new loading course proposed",
        "detail": "",
        "indicator": "info",
        "extension": {"card": "safety-S7"},
    }
    severe = {"summary": "neuro", "detail": "", "indicator": "critical", "extension": {}}
    assert contradictions([course, quiet])
    assert contradictions([course, severe]) == ["severe, but treatment recommends oral first"]
    assert contradictions([course, dict(course)])
    assert contradictions([quiet, severe]) == []
