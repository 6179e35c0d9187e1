"""Geometry of the schedule timeline (inline SVG): one row per phase, one mark per dose.

Each row has a time scale of its own: a week of daily doses and a year of monthly ones are
both legible, which one shared axis cannot do. Date labels are thinned where they would
collide; every date is still in the table below the figure and in each mark's title.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from cds_service.pages.schedule import PhaseView, ScheduleView

WIDTH = 960
LEFT = 210
RIGHT = 40
ROW = 78
TOP = 12
MIN_LABEL_GAP = 46
#: Colour per phase, checked for contrast against white text and the page background.
COLOURS = ("#1f5f99", "#7a4b9c", "#2e7d4f", "#a0522d", "#5b6770", "#8a3b5c")


@dataclass(frozen=True)
class Mark:
    x: float
    label: str | None
    title: str
    iso: str


@dataclass(frozen=True)
class Row:
    phase: PhaseView
    y: float
    colour: str
    x0: float
    x1: float
    marks: tuple[Mark, ...]


@dataclass(frozen=True)
class Timeline:
    width: int
    height: int
    rows: tuple[Row, ...]


def _short(d: date) -> str:
    return f"{d.day} {d.strftime('%b')}"


def timeline(view: ScheduleView) -> Timeline:
    rows = []
    span = WIDTH - LEFT - RIGHT
    for i, phase in enumerate(view.phases):
        scheduled = phase.scheduled
        last_day = scheduled.end or phase.shown_until or phase.doses[-1]
        days = max((last_day - scheduled.start).days, 1)
        marks = []
        last_label = -1e9
        for n, day in enumerate(phase.doses):
            x = LEFT + span * (day - scheduled.start).days / days
            is_edge = n in (0, len(phase.doses) - 1)
            label = None
            if x - last_label >= MIN_LABEL_GAP or (is_edge and n == 0):
                label = _short(day)
                last_label = x
            title = f"Dose {n + 1}: {day.strftime('%a')} {day.isoformat()}"
            marks.append(Mark(x, label, title, day.isoformat()))
        rows.append(
            Row(
                phase=phase,
                y=TOP + i * ROW,
                colour=COLOURS[i % len(COLOURS)],
                x0=LEFT,
                x1=LEFT + span,
                marks=tuple(marks),
            )
        )
    return Timeline(WIDTH, TOP + len(rows) * ROW + 8, tuple(rows))
