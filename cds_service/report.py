"""Plain-text rendering of a plan, for the command line and logs a clinician may read."""

from __future__ import annotations

from cds_service.clinical.regimen import Plan, Schedule


def _schedule_rows(schedule: Schedule) -> list[str]:
    rows = []
    for p in schedule.phases:
        t = p.phase.timing
        period = f"{t.period:g}" + (f"-{t.period_max:g}" if t.period_max else "")
        every = f"{t.frequency}x / {period} {t.period_unit}"
        end = p.end.isoformat() if p.end else "lifelong"
        rows.append(
            f"  {p.index + 1}  {p.phase.id:<17} {p.phase.dose_ug:>6g} ug  {p.phase.route:<13} "
            f"{every:<14} {str(t.count or '-'):>5}  {p.start.isoformat()}  {end}"
        )
    return rows


def render(plan: Plan) -> str:
    a = plan.assessment
    lines = [
        f"Profile:   {a.profile_name} (version {a.profile.version})",
        f"Status:    {a.status}",
        f"Type:      {a.type_rule.label if a.type_rule else '-'}"
        + (f" ({', '.join(c.label for c in a.causes)})" if a.causes else ""),
        f"Severity:  {a.severity}",
        f"Rules:     {', '.join(plan.rule_ids)}",
        "Evidence:",
    ]
    for e in (*a.deficiency_evidence, *a.cause_evidence):
        lines.append(f"  - {e.text} [{e.reference}{', ' + e.date if e.date else ''}]")
    for r in a.unusable:
        lines.append(f"  - NOT USABLE {r.analyte}: {r.shown} ({r.problem}) [{r.reference}]")
    for r in a.stale:
        lines.append(f"  - STALE {r.analyte}: {r.shown} ({r.date_text}) [{r.reference}]")
    for r in a.conflicting:
        lines.append(f"  - CONFLICTING {r.analyte}: {r.shown} ({r.date_text}) [{r.reference}]")
    for f in a.findings:
        lines.append(f"Safety {f.rule.id} ({f.rule.indicator}): {f.rule.summary}")
        for e in f.evidence:
            lines.append(f"  - {e.text} [{e.reference}]")
    if plan.recommended is None:
        lines.append("Schedule:  none proposed")
    for s in plan.schedules:
        tag = "recommended" if s.recommended else "alternative"
        new = "" if a.new_course or not s.recommended else " (reference only: no new course)"
        lines.append(f"Schedule ({tag}, {s.rule_id}): {s.regimen.title}{new}")
        lines.append(
            "  #  phase             dose       route         every          count  start       end"
        )
        lines += _schedule_rows(s)
    if plan.monitoring:
        lines.append("Monitoring:")
        lines += [f"  {m.id}: {m.text}" for m in plan.monitoring]
    return "\n".join(lines)
