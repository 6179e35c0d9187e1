"""Regimen: the R-rule that applies, its phases with dates, and the monitoring plan (M-rules).

Dates come from an explicit start date: there is no clock in here, so the same record and
start date always give the same schedule.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property, lru_cache

from cds_service.clinical.assessment import Assessment
from cds_service.clinical.codes import code_index
from cds_service.clinical.expressions import Scope, evaluate
from cds_service.protocol import Protocol
from cds_service.protocol.model import Duration, MonitoringRule, Phase, Regimen


@dataclass(frozen=True)
class ScheduledPhase:
    phase: Phase
    index: int
    start: date
    end: date | None


@dataclass(frozen=True)
class Schedule:
    """One regimen laid out in dates."""

    rule_id: str
    regimen_id: str
    regimen: Regimen
    phases: tuple[ScheduledPhase, ...]
    lifelong: bool
    recommended: bool


@dataclass(frozen=True)
class Plan:
    assessment: Assessment
    start: date
    recommended: Schedule | None
    alternatives: tuple[Schedule, ...]
    monitoring: tuple[MonitoringRule, ...]

    @property
    def schedules(self) -> tuple[Schedule, ...]:
        return ((self.recommended,) if self.recommended else ()) + self.alternatives

    @cached_property
    def rule_ids(self) -> tuple[str, ...]:
        """Every card cites them, so they are put together once per plan."""
        ids = list(self.assessment.rule_ids)
        for schedule in self.schedules:
            if schedule.rule_id not in ids:
                ids.append(schedule.rule_id)
        ids += [m.id for m in self.monitoring if m.id not in ids]
        return tuple(sorted(ids, key=_rule_order))


def _rule_order(rule_id: str) -> tuple[int, int]:
    return ("DTSRM".index(rule_id[0]), int(rule_id[1:]))


def add_duration(day: date, duration: Duration) -> date:
    """The day after a period of `duration` that starts on `day`."""
    if duration.unit == "d":
        return day + timedelta(days=duration.value)
    if duration.unit == "wk":
        return day + timedelta(weeks=duration.value)
    month = day.month - 1 + duration.value
    year, month = day.year + month // 12, month % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def lay_out(
    regimen: Regimen, start: date, *, lifelong: bool, review: Duration
) -> tuple[ScheduledPhase, ...]:
    """Chain the phases: each starts the day after the previous one ends (ends are inclusive)."""
    out = []
    day = start
    for i, phase in enumerate(regimen.phases):
        span = phase.duration or (None if lifelong else review)
        end = add_duration(day, span) - timedelta(days=1) if span else None
        out.append(ScheduledPhase(phase, i, day, end))
        if end is None:
            break
        day = end + timedelta(days=1)
    return tuple(out)


#: Schedules laid out per (regimen, start day, lifelong, review): a few per day in use.
_LAID_OUT = 1024


class Planner:
    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self.codes = code_index(protocol)
        # Every patient who starts a regimen on the same day gets the same dates: they are
        # laid out once (the phases are frozen, so answers can share them).
        self._phases = lru_cache(maxsize=_LAID_OUT)(self._lay_out)

    def _lay_out(
        self, regimen_id: str, start: date, lifelong: bool, review: Duration
    ) -> tuple[ScheduledPhase, ...]:
        regimen = self.protocol.regimens.regimens[regimen_id]
        return lay_out(regimen, start, lifelong=lifelong, review=review)

    def plan(self, assessment: Assessment, *, start: date) -> Plan:
        # A test some profiles' sources do not ask for (M6 coeliac serology) is left out there.
        rules = [
            m
            for m in self.protocol.rules.monitoring_rules
            if not m.profiles or assessment.profile_name in m.profiles
        ]
        monitoring_with = [m for m in rules if m.only_with in assessment.flags]
        # Tests that investigate the cause (M5, M6 with T6) come with a schedule only.
        type_id = assessment.type_rule.id if assessment.type_rule else None
        monitoring_type = [m for m in rules if type_id and m.only_with == type_id]
        if not assessment.schedule_allowed:
            return Plan(assessment, start, None, (), tuple(monitoring_with))
        scope = Scope(
            self.protocol,
            assessment.profile,
            assessment.facts,
            self.codes,
            assessment.day,
            status=assessment.status,
            type=assessment.type,
            causes=frozenset(c.id for c in assessment.causes),
            flags=assessment.flags,
            severity=assessment.severity,
        )
        for rule in assessment.profile.regimen_rules:
            if evaluate(rule.when, scope)[0]:
                break
        else:
            return Plan(assessment, start, None, (), tuple(monitoring_with))

        def schedule(rule_id: str, regimen_id: str, recommended: bool) -> Schedule:
            regimen = self.protocol.regimens.regimens[regimen_id]
            phases = self._phases(
                regimen_id, start, assessment.lifelong, assessment.profile.maintenance_review
            )
            return Schedule(rule_id, regimen_id, regimen, phases, assessment.lifelong, recommended)

        recommended = schedule(rule.id, rule.recommended, True)
        alternatives = [schedule(a.rule, a.regimen, False) for a in rule.alternatives]
        # R7: options beside what the regimen rule decided (sublingual beside oral, an
        # individual interval beside IM maintenance); each only ever adds an alternative.
        for option in assessment.profile.option_rules:
            if not evaluate(option.when, scope)[0]:
                continue
            offered = [recommended.regimen_id, *(s.regimen_id for s in alternatives)]
            twin = next((option.beside[r] for r in offered if r in option.beside), None)
            if twin is not None and twin not in offered:
                alternatives.append(schedule(option.id, twin, False))
        monitoring = [m for m in rules if m.only_with is None]
        return Plan(
            assessment,
            start,
            recommended,
            tuple(alternatives),
            tuple(monitoring + monitoring_type + monitoring_with),
        )
