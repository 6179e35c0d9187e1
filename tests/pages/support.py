"""Shared by the page tests: a golden patient's plan and series, and dose dates read
independently from a MedicationRequest's timing (not with the service's own expansion)."""

from __future__ import annotations

import calendar
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from cds_service.clinical.regimen import Plan
from cds_service.engine import Engine, bundle_resources

ROOT = Path(__file__).resolve().parents[2]
PATIENTS = ROOT / "fhir_examples" / "patients"
START = date(2026, 12, 1)
ENGINE = Engine.build()


def golden_plan(slug: str, start: date = START) -> tuple[Plan, dict[str, list[dict[str, Any]]]]:
    bundle = json.loads((PATIENTS / f"{slug}.json").read_text())
    resources = bundle_resources(bundle)
    patient = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    profile = json.loads((PATIENTS / f"{slug}.expected.json").read_text())["profile"]
    plan = ENGINE.plan(resources, start=start, patient_id=patient, profile=profile)
    return plan, ENGINE.medication_requests(plan)


def schedule_url(plan: Plan, regimen_id: str, path: str = "/schedule") -> str:
    lifelong = "lifelong" if plan.assessment.lifelong else "review"
    return (
        f"{path}?regimen={regimen_id}&profile={plan.assessment.profile_name}"
        f"&start={plan.start.isoformat()}&end={lifelong}"
    )


def _months(day: date, n: int) -> date:
    y, m = divmod(day.month - 1 + n, 12)
    year, month = day.year + y, m + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def mr_dates(mr: dict[str, Any], horizon: date) -> list[date]:
    """Dose dates of one MedicationRequest: every `period` from the start, `count` or end."""
    repeat = mr["dosageInstruction"][0]["timing"]["repeat"]
    per = repeat["frequency"]  # several a period: spread evenly over it (3 a week: 0, 2, 4)
    start = date.fromisoformat(repeat["boundsPeriod"]["start"])
    end_text = repeat["boundsPeriod"].get("end")
    end = date.fromisoformat(end_text) if end_text else horizon
    out = []
    n = 0
    while "count" not in repeat or n < repeat["count"]:
        if repeat["periodUnit"] == "mo":
            assert per == 1
            day = _months(start, n * repeat["period"])
        else:
            step = {"d": 1, "wk": 7}[repeat["periodUnit"]] * repeat["period"]
            day = start + timedelta(days=(n // per) * step + (n % per) * step // per)
        if day > end:
            break
        out.append(day)
        n += 1
    return out


def shown_dates(mr: dict[str, Any]) -> list[date]:
    """The dates the schedule page shows: all, or a year of an open-ended phase."""
    bounds = mr["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]
    start = date.fromisoformat(bounds["start"])
    if "end" in bounds:
        return mr_dates(mr, date.fromisoformat(bounds["end"]))
    return mr_dates(mr, _months(start, 12) - timedelta(days=1))
