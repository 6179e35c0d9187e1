"""The dates a MedicationRequest's `timing.repeat` gives, for calendars and timelines.

The schedule page and its `.ics` download read the same `timing.repeat` (with `boundsPeriod`)
that the MedicationRequest series carries, so a patient's calendar cannot disagree with the
orders. Doses fall every `period` from the bounds' start (the shorter interval where the timing
gives a range, e.g. every 3-4 days), at most `count` of them and not after the bounds' end. An
open-ended phase (no end, no count) is expanded only up to a horizon the caller chooses.
Where a period holds several doses (three a week) and the timing names no days, they are
spread evenly over the period from its first day (days 0, 2 and 4 of each week).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from cds_service.clinical.regimen import add_duration
from cds_service.protocol.model import Duration


class UnsupportedTiming(ValueError):
    """A timing this expansion does not read (several doses per period, or no start)."""


def _nth(start: date, n: int, period: float, unit: str) -> date:
    if unit == "d":
        return start + timedelta(days=n * period)
    if unit == "wk":
        return start + timedelta(weeks=n * period)
    if unit == "mo" and float(period).is_integer():
        # Counted from the start, not chained, so a dose on the 31st stays at the month's end.
        months = n * int(period)
        return add_duration(start, Duration(value=months, unit="mo")) if months else start
    raise UnsupportedTiming(f"period unit {unit!r} with period {period!r}")


def _offset(k: int, frequency: int, period: float, unit: str) -> int:
    """Day of the k-th of `frequency` doses in one period: spread evenly (3 a week: 0, 2, 4)."""
    days = {"d": 1, "wk": 7}.get(unit)
    if days is None or frequency > period * days:
        raise UnsupportedTiming(f"{frequency} doses per {period:g} {unit}")
    return int(k * period * days // frequency)


def dose_dates(repeat: Mapping[str, Any], *, horizon: date | None = None) -> list[date]:
    """Every dose date of one `timing.repeat`; open-ended timings stop at `horizon`."""
    bounds = repeat.get("boundsPeriod") or {}
    if not isinstance(bounds.get("start"), str):
        raise UnsupportedTiming("boundsPeriod.start is missing")
    frequency = repeat.get("frequency", 1)
    if not isinstance(frequency, int) or frequency < 1:
        raise UnsupportedTiming("frequency must be a positive whole number")
    start = date.fromisoformat(bounds["start"][:10])
    end = date.fromisoformat(bounds["end"][:10]) if isinstance(bounds.get("end"), str) else None
    count = repeat.get("count")
    last = min(d for d in (end, horizon) if d is not None) if (end or horizon) else None
    if last is None and count is None:
        raise UnsupportedTiming("open-ended timing needs a horizon")
    period, unit = repeat.get("period", 1), repeat.get("periodUnit", "d")
    out: list[date] = []
    n = 0
    while count is None or n < count:
        day = _nth(start, n // frequency, period, unit)
        if frequency > 1:
            day += timedelta(days=_offset(n % frequency, frequency, period, unit))
        if last is not None and day > last:
            break
        out.append(day)
        n += 1
    return out
