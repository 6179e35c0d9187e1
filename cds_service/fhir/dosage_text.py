"""Human-readable dosage lines, generated from the coded timing so the two cannot disagree."""

from __future__ import annotations

from cds_service.clinical.regimen import ScheduledPhase
from cds_service.protocol.model import Duration, Medication, Route, Timing

_UNIT_WORDS = {"d": ("day", "days"), "wk": ("week", "weeks"), "mo": ("month", "months")}
_ONCE = {"d": "once daily", "wk": "once a week", "mo": "once a month"}


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def frequency_phrase(t: Timing) -> str:
    one, many = _UNIT_WORDS[t.period_unit]
    if t.frequency == 1 and t.period == 1 and t.period_max is None:
        return _ONCE[t.period_unit]
    if t.frequency > 1:
        per = one if t.period == 1 else f"{_num(t.period)} {many}"
        return (
            f"{t.frequency} times a {per}" if t.period == 1 else f"{t.frequency} times every {per}"
        )
    if t.period_max is not None:
        return f"every {_num(t.period)} to {_num(t.period_max)} {many}"
    extra = " (alternate days)" if t.period_unit == "d" and t.period == 2 else ""
    return f"every {_num(t.period)} {many}{extra}"


def duration_phrase(d: Duration) -> str:
    one, many = _UNIT_WORDS[d.unit]
    return f"{d.value} {one if d.value == 1 else many}"


def dosage_text(
    scheduled: ScheduledPhase, medication: Medication, route: Route, review: Duration
) -> str:
    phase = scheduled.phase
    parts = [
        f"{medication.name} {_num(phase.dose_ug)} mcg {route.text}",
        frequency_phrase(phase.timing),
    ]
    if phase.timing.count:
        parts.append(f"for {phase.timing.count} doses")
    elif phase.duration:
        parts.append(f"for {duration_phrase(phase.duration)}")
    elif scheduled.end is None:
        parts.append("lifelong")
    else:
        parts.append(f"for {duration_phrase(review)}, then review whether the cause persists")
    when = f"from {scheduled.start.isoformat()}"
    if scheduled.end:
        when += f" to {scheduled.end.isoformat()}"
    return f"{' '.join(parts)} ({when})."
