"""A proposed schedule computed from the regimen, profile, start date and end rule alone.

The schedule page's URL carries no patient data: the treatment card links to it with the
regimen id, profile, start date and whether maintenance is lifelong, and the page lays the
phases out again with the same code the MedicationRequest series is written from. Each
phase's dose dates come from the `timing.repeat` its MedicationRequest carries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from cds_service.clinical.regimen import ScheduledPhase, add_duration, lay_out
from cds_service.fhir.dosage_text import dosage_text, frequency_phrase
from cds_service.fhir.dose_dates import dose_dates
from cds_service.fhir.medication_requests import phase_template
from cds_service.protocol import Protocol
from cds_service.protocol.model import Duration, Profile, Regimen

END_RULES = ("lifelong", "review")
#: An open-ended maintenance phase is shown (and put in the calendar as dated events) this long.
OPEN_ENDED_SHOWN_MONTHS = 12
EARLIEST = date(2000, 1, 1)
LATEST = date(2100, 12, 31)


class ScheduleQueryError(ValueError):
    """The query names no regimen of the profile, or a start date or end rule that is invalid."""


@dataclass(frozen=True)
class ScheduleQuery:
    regimen_id: str
    profile_name: str
    start: date
    lifelong: bool

    def query_string(self) -> str:
        return urlencode(
            {
                "regimen": self.regimen_id,
                "profile": self.profile_name,
                "start": self.start.isoformat(),
                "end": "lifelong" if self.lifelong else "review",
            }
        )


def regimens_of(profile: Profile) -> list[str]:
    """The regimens a profile can propose, in table order, each once (R7 options last)."""
    out: list[str] = []
    for rule in profile.regimen_rules:
        for regimen_id in (rule.recommended, *(a.regimen for a in rule.alternatives)):
            if regimen_id not in out:
                out.append(regimen_id)
    for option in profile.option_rules:
        out += [r for r in option.beside.values() if r not in out]
    return out


def parse_query(
    params: Mapping[str, str], protocol: Protocol, default_profile: str | None
) -> ScheduleQuery:
    profile_name = params.get("profile") or default_profile or protocol.profiles.default
    if profile_name not in protocol.profiles.profiles:
        raise ScheduleQueryError(f"unknown profile; known: {', '.join(protocol.profiles.profiles)}")
    regimen_id = params.get("regimen", "")
    known = regimens_of(protocol.profiles.profiles[profile_name])
    if regimen_id not in known:
        raise ScheduleQueryError(
            f"regimen must be one of the profile's regimens: {', '.join(known)}"
        )
    try:
        start = date.fromisoformat(params.get("start", ""))
    except ValueError:
        raise ScheduleQueryError("start must be a date (YYYY-MM-DD)") from None
    if not EARLIEST <= start <= LATEST:
        raise ScheduleQueryError(f"start must lie between {EARLIEST} and {LATEST}")
    end = params.get("end", "review")
    if end not in END_RULES:
        raise ScheduleQueryError(f"end must be one of: {', '.join(END_RULES)}")
    return ScheduleQuery(regimen_id, profile_name, start, end == "lifelong")


@dataclass(frozen=True)
class PhaseView:
    scheduled: ScheduledPhase
    number: int
    title: str
    #: Product and dose, e.g. "Cyanocobalamin 1000 mcg".
    dose: str
    dosage: str
    frequency: str
    route: str
    injection: bool
    condition: str | None
    #: `timing.repeat` as the phase's MedicationRequest carries it (boundsPeriod included).
    repeat: dict[str, Any]
    doses: tuple[date, ...]
    #: No end date: the doses shown stop at `shown_until`, the phase goes on.
    open_ended: bool
    shown_until: date | None


@dataclass(frozen=True)
class ScheduleView:
    query: ScheduleQuery
    regimen: Regimen
    profile: Profile
    phases: tuple[PhaseView, ...]

    @property
    def first(self) -> date:
        return self.phases[0].doses[0]

    @property
    def last(self) -> date:
        return max(p.doses[-1] for p in self.phases if p.doses)

    @property
    def dose_count(self) -> int:
        return sum(len(p.doses) for p in self.phases)


def build_schedule(protocol: Protocol, query: ScheduleQuery) -> ScheduleView:
    regimen = protocol.regimens.regimens[query.regimen_id]
    profile = protocol.profiles.profiles[query.profile_name]
    review = profile.maintenance_review
    laid = lay_out(regimen, query.start, lifelong=query.lifelong, review=review)
    phases = []
    for scheduled in laid:
        phase = scheduled.phase
        bounds = {"start": scheduled.start.isoformat()}
        if scheduled.end:
            bounds["end"] = scheduled.end.isoformat()
        repeat = {"boundsPeriod": bounds, **phase_template(protocol, phase).repeat}
        horizon = None
        if scheduled.end is None and phase.timing.count is None:
            horizon = _months_after(scheduled.start, OPEN_ENDED_SHOWN_MONTHS)
        medication = protocol.regimens.medications[phase.medication]
        route = protocol.regimens.routes[phase.route]
        phases.append(
            PhaseView(
                scheduled=scheduled,
                number=scheduled.index + 1,
                title=phase.title,
                dose=f"{medication.name} {phase.dose_ug:g} mcg",
                dosage=dosage_text(scheduled, medication, route, review),
                frequency=frequency_phrase(phase.timing),
                route=route.text,
                injection=phase.route != "oral",
                condition=phase.condition,
                repeat=repeat,
                doses=tuple(dose_dates(repeat, horizon=horizon)),
                open_ended=scheduled.end is None,
                shown_until=horizon,
            )
        )
    return ScheduleView(query, regimen, profile, tuple(phases))


def _months_after(day: date, months: int) -> date:
    """The last day shown of an open-ended phase: the day before `months` months after `day`."""
    return add_duration(day, Duration(value=months, unit="mo")) - timedelta(days=1)
