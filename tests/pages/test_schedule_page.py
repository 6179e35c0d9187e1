"""The schedule page and its .ics: every dose of the golden patients' series, no PHI."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import icalendar
import pytest
from fastapi.testclient import TestClient
from support import isolated_settings

from cds_service.app import create_app

from .support import START, golden_plan, mr_dates, schedule_url, shown_dates

SCHEDULED = [
    "t2-pernicious-anemia-d51-0",
    "t2-pernicious-anemia-d51-0-nice",
    "t2-pernicious-anemia-d51-0-fda",
    "t3-bariatric-roux-en-y",
    "t4-metformin",
    "t5-vegan-diet",
    "s1-polyneuropathy-metformin",
]


@pytest.fixture(scope="module")
def http() -> TestClient:
    return TestClient(create_app(isolated_settings(auth=False), clock=lambda: START))


def _expanded(cal: icalendar.Calendar, horizon: date) -> list[date]:
    """Every event date, recurring events expanded up to `horizon` with dateutil."""
    from dateutil.rrule import rrulestr

    days: list[date] = []
    for event in cal.walk("VEVENT"):
        start = event.decoded("DTSTART")
        rule = event.get("RRULE")
        if rule is None:
            days.append(start)
            continue
        text = rule.to_ical().decode()
        moments = rrulestr(text, dtstart=datetime.combine(start, datetime.min.time()))
        days += [d.date() for d in moments.between(
            datetime.combine(start, datetime.min.time()),
            datetime.combine(horizon, datetime.min.time()), inc=True)]  # fmt: skip
    return sorted(days)


@pytest.mark.parametrize("slug", SCHEDULED)
def test_ics_events_equal_the_medication_request_series(http: TestClient, slug: str) -> None:
    plan, series = golden_plan(slug)
    assert plan.schedules, f"{slug} has no schedule"
    for schedule in plan.schedules:
        horizon = START + timedelta(days=800)
        expected = sorted(d for mr in series[schedule.regimen_id] for d in mr_dates(mr, horizon))
        answer = http.get(schedule_url(plan, schedule.regimen_id, "/schedule.ics"))
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/calendar")
        cal = icalendar.Calendar.from_ical(answer.content)
        assert _expanded(cal, horizon) == expected


@pytest.mark.parametrize("slug", SCHEDULED)
def test_schedule_page_lists_every_dose_date(http: TestClient, slug: str) -> None:
    plan, series = golden_plan(slug)
    rec = plan.recommended
    assert rec is not None
    page = http.get(schedule_url(plan, rec.regimen_id))
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for mr in series[rec.regimen_id]:
        for day in shown_dates(mr):
            assert f'datetime="{day.isoformat()}"' in page.text
            assert f'data-date="{day.isoformat()}"' in page.text


def test_monthly_dose_on_the_31st_stays_at_month_end(http: TestClient) -> None:
    """An open-ended monthly phase is one RRULE; on the 31st it must not skip short months."""
    # Maintenance starts 42 days after a 2026-11-19 start: 2026-12-31.
    url = "/schedule.ics?regimen=cyanocobalamin-im-1000&start=2026-11-19&end=lifelong"
    cal = icalendar.Calendar.from_ical(http.get(url).content)
    days = [d for d in _expanded(cal, date(2027, 5, 1)) if d >= date(2026, 12, 31)]
    assert days == [date(2026, 12, 31), date(2027, 1, 31), date(2027, 2, 28),
                    date(2027, 3, 31), date(2027, 4, 30)]  # fmt: skip


@pytest.mark.parametrize(
    "query",
    [
        "regimen=unknown&start=2026-12-01",
        "regimen=cyanocobalamin-im-1000&start=yesterday",
        "regimen=cyanocobalamin-im-1000&start=2026-12-01&end=forever",
        "regimen=cyanocobalamin-im-1000&start=2026-12-01&profile=nope",
        "regimen=cyanocobalamin-im-100-fda&start=2026-12-01&profile=nice-ng239",
    ],
)
def test_bad_schedule_query_is_400_json(http: TestClient, query: str) -> None:
    answer = http.get(f"/schedule?{query}")
    assert answer.status_code == 400
    assert answer.json()["error"]["status"] == 400


def test_schedule_page_names_no_patient(http: TestClient) -> None:
    plan, _ = golden_plan("t2-pernicious-anemia-d51-0")
    rec = plan.recommended
    assert rec is not None
    page = http.get(schedule_url(plan, rec.regimen_id)).text
    patient = plan.assessment.facts.patient_reference or ""
    assert patient and patient.split("/")[-1] not in page
    assert "Patient/" not in page
