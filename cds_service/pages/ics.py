"""The schedule as an iCalendar file (RFC 5545): one all-day event per dose.

An open-ended phase is one recurring event without an end (RRULE), so the calendar says
"for life" as the order does; its first date and interval come from the same `timing.repeat`.
Monthly doses on the 29th-31st fall on the month's last day where the month is shorter, as the
dose dates do (BYMONTHDAY=d,-1 with BYSETPOS=1). No patient data goes into the file.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from cds_service.pages.schedule import PhaseView, ScheduleView

PRODID = "-//B12 CDS//Injection schedule//EN"
_FREQ = {"d": "DAILY", "wk": "WEEKLY", "mo": "MONTHLY"}


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _fold(line: str) -> str:
    """Lines longer than 75 octets continue on the next line after a space (RFC 5545 3.1)."""
    out: list[str] = []
    current = b""
    for ch in line:
        encoded = ch.encode("utf-8")
        if len(current) + len(encoded) > (75 if not out else 74):
            out.append(current.decode("utf-8"))
            current = b""
        current += encoded
    out.append(current.decode("utf-8"))
    return "\r\n ".join(out)


def _day(d: date) -> str:
    return d.strftime("%Y%m%d")


def _event(uid: str, stamp: str, day: date, summary: str, description: str) -> list[str]:
    return [
        "BEGIN:VEVENT",
        f"UID:{uid}",
        f"DTSTAMP:{stamp}",
        f"DTSTART;VALUE=DATE:{_day(day)}",
        f"DTEND;VALUE=DATE:{_day(day + timedelta(days=1))}",
        f"SUMMARY:{_escape(summary)}",
        f"DESCRIPTION:{_escape(description)}",
        "TRANSP:TRANSPARENT",
        "END:VEVENT",
    ]


def _rule(phase: PhaseView, start: date) -> str:
    repeat = phase.repeat
    unit = repeat["periodUnit"]
    rule = f"RRULE:FREQ={_FREQ[unit]};INTERVAL={int(repeat['period'])}"
    if unit == "mo" and start.day > 28:
        rule += f";BYMONTHDAY={start.day},-1;BYSETPOS=1"
    return rule


def ics(view: ScheduleView, *, now: datetime) -> str:
    """The calendar; `now` (UTC) is the DTSTAMP every event needs."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    q = view.query
    key = f"{q.regimen_id}.{q.profile_name}.{q.start.isoformat()}"
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"X-WR-CALNAME:{_escape(view.regimen.title)}",
    ]
    for phase in view.phases:
        what = "injection" if phase.injection else "by mouth"
        summary = f"{phase.dose} {what}"
        notes = f"Phase {phase.number} of {len(view.phases)}: {phase.title}. {phase.dosage}"
        if phase.condition:
            notes += f" {phase.condition}"
        if phase.open_ended:
            # One recurring event per dose of a period (three a week: three weekly events).
            for k in range(min(phase.repeat.get("frequency", 1), len(phase.doses))):
                uid = f"{key}.{phase.number}.r{k + 1}@b12-cds"
                event = _event(uid, stamp, phase.doses[k], summary, notes)
                event.insert(-1, _rule(phase, phase.doses[k]))
                lines += event
            continue
        for n, day in enumerate(phase.doses, 1):
            uid = f"{key}.{phase.number}.{n}@b12-cds"
            text = f"Dose {n} of {len(phase.doses)}. {notes}"
            lines += _event(uid, stamp, day, summary, text)
    lines.append("END:VCALENDAR")
    return "\r\n".join(_fold(line) for line in lines) + "\r\n"
