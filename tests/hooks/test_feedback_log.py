"""Feedback through HTTP: what reaches the log is validated uuids and the service's own
override reason codes, capped; client strings and free text never do."""

from __future__ import annotations

import uuid

import pytest

from .helpers import client, golden_request

pytestmark = pytest.mark.anyio
PV = "/cds-services/b12-patient-view"


async def test_feedback_fields_are_logged_only_when_validated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="cds_service.feedback")
    async with client() as c:
        cards = (
            await c.post(PV, json=golden_request("t2-pernicious-anemia-d51-0", "patient-view"))
        ).json()["cards"]
        own = cards[0]["overrideReasons"][0]
        many = [{"id": str(uuid.uuid4())} for _ in range(50)]
        feedback = {
            "feedback": [
                {
                    "card": cards[0]["uuid"],
                    "outcome": "overridden",
                    "overrideReason": {"reason": own, "userComment": "Mrs Smith prefers tablets"},
                    "outcomeTimestamp": "2026-12-01T10:05:31Z",
                },
                {
                    "card": "x\nINFO feedback service=forged card=forged",
                    "outcome": "overridden",
                    "overrideReason": {
                        "reason": {"system": "urn:x", "code": "forged\nERROR line"},
                    },
                    "outcomeTimestamp": "2026-12-01T10:05:31Z",
                },
                {
                    "card": str(uuid.uuid4()),
                    "outcome": "accepted",
                    "acceptedSuggestions": many,
                    "outcomeTimestamp": "2026-12-01T10:05:31Z",
                },
            ]
        }
        assert (await c.post(PV + "/feedback", json=feedback)).status_code == 200
        huge = {
            "feedback": [
                {
                    "card": cards[0]["uuid"],
                    "outcome": "overridden",
                    "overrideReason": {"reason": {"code": "x" * 1_000_000}},
                    "outcomeTimestamp": "2026-12-01T10:05:31Z",
                }
            ]
        }
        r = await c.post(PV + "/feedback", json=huge)
        assert r.status_code == 400
        assert "x" * 300 not in r.text
    lines = [r.getMessage() for r in caplog.records if r.name == "cds_service.feedback"]
    assert len(lines) == 3
    first, forged, accepted = lines
    assert f"reason={own['code']}" in first and "Smith" not in first
    assert "card=not-a-uuid" in forged and "reason=not-an-own-reason" in forged
    assert "forged" not in forged
    assert ",+40 more" in accepted and many[10]["id"] not in accepted
    for line in lines:
        assert "\n" not in line and len(line) < 1000
