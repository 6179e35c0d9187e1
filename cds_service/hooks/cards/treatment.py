"""The treatment card: the action first, the schedule one line per phase, the rest as links.

A side panel is about an eighth of the screen, so the summary names the drug, dose, route and
the shape of the schedule (the type goes to the detail's first line), the detail lists each
phase on one dated line, and the alternatives are the suggestions' labels. The monitoring
tests (M-rules) are created with whichever series is accepted, so dismissing the card leaves
no monitoring card that only made sense with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta

from cds_service.clinical.facts import CodedRecord
from cds_service.clinical.regimen import Plan, Schedule
from cds_service.hooks.cards.parts import (
    JSON,
    CardParts,
    HookContext,
    evidence_lines,
    fit,
)

SUMMARY_TARGET = 80
LABEL_LIMIT = 60


class TreatmentCards(CardParts):
    def medication_name(self, schedule: Schedule) -> str:
        first = schedule.phases[0].phase
        return self.protocol.regimens.medications[first.medication].name

    def action_summary(self, schedule: Schedule, verb: str = "Start", cause: str = "") -> str:
        name = self.medication_name(schedule).lower()
        shape = self.shape(schedule)
        if cause:  # T3 amended: the cause in plain words, after the action
            return fit(
                f"{verb} {name} {shape}"
                + (", lifelong" if schedule.lifelong else "")
                + f" ({cause})",
                f"{verb} {name} {shape} ({cause})",
                f"{verb} {name} {shape}",
            )
        return fit(
            f"{verb} {name} {shape}" + (", lifelong" if schedule.lifelong else ""),
            f"{verb} {name} {shape}",
            f"{verb} {name} {self.phase_words(schedule.phases[0])}",
            limit=SUMMARY_TARGET,
        )

    def series_label(self, schedule: Schedule) -> str:
        tag = "" if schedule.recommended else "Alt: "
        return fit(f"{tag}{self.shape(schedule)}", limit=LABEL_LIMIT)

    def monitoring_actions(self, plan: Plan, ctx: HookContext) -> list[JSON]:
        """The M-rules as draft laboratory tests, dated from the start of treatment."""
        return [
            {
                "type": "create",
                "description": fit(f"Order {m.name} ({m.id}): {m.text}"),
                "resource": self.service_request(
                    plan,
                    ctx,
                    m.test,
                    m.test.display or m.test.code,
                    f"B12 treatment monitoring ({m.id})",
                    plan.start + timedelta(days=m.offset_days),
                ),
            }
            for m in plan.monitoring
        ]

    def series_suggestion(
        self,
        plan: Plan,
        schedule: Schedule,
        series: Mapping[str, list[JSON]],
        ctx: HookContext,
        new_id: Callable[[], str],
        *,
        label: str | None = None,
        deletes: Iterable[str] = (),
        monitoring: list[JSON] | None = None,
    ) -> JSON | None:
        """One schedule's orders and the monitoring tests; `monitoring`, when given, is
        `monitoring_actions` already made for this plan (the same for each of its schedules,
        so a card with several suggestions makes them once and shares them, as it shares the
        MedicationRequests of `series`)."""
        resources = series.get(schedule.regimen_id) or []
        if not resources:
            return None
        actions: list[JSON] = [
            {"type": "delete", "description": f"Remove the draft order {ref}", "resourceId": ref}
            for ref in deletes
        ]
        for r in resources:
            text = r.get("dosageInstruction", [{}])[0].get("text", "")
            actions.append(
                {
                    "type": "create",
                    "description": fit(f"Create: {text}", f"Create phase {r.get('id', '')}"),
                    "resource": r,
                }
            )
        actions += self.monitoring_actions(plan, ctx) if monitoring is None else monitoring
        return {
            "label": label or self.series_label(schedule),
            "uuid": new_id(),
            "isRecommended": schedule.recommended,
            "actions": actions,
        }

    def replace_suggestions(
        self,
        plan: Plan,
        series: Mapping[str, list[JSON]],
        drafts: Iterable[CodedRecord],
        ctx: HookContext,
        new_id: Callable[[], str],
    ) -> list[JSON]:
        """Replace the drafts with the recommended series, or remove them if there is none."""
        refs = [r.reference for r in drafts]
        if plan.recommended is not None and plan.assessment.new_course:
            suggestion = self.series_suggestion(
                plan,
                plan.recommended,
                series,
                ctx,
                new_id,
                label=fit(f"Replace with {self.shape(plan.recommended)}", limit=LABEL_LIMIT),
                deletes=refs,
            )
            if suggestion is not None:
                return [suggestion]
        return [
            {
                "label": "Remove the draft order",
                "uuid": new_id(),
                "actions": [
                    {"type": "delete", "description": f"Remove the draft order {ref}",
                     "resourceId": ref}
                    for ref in refs
                ],
            }
        ]  # fmt: skip

    def type_line(self, plan: Plan, *, causes_in_summary: bool = False) -> str:
        a = plan.assessment
        type_label = a.type_rule.label if a.type_rule else "cause not identified"
        causes = ", ".join(c.label for c in a.causes if c.id != "unspecified")
        causes = "" if causes_in_summary else causes
        severe = " · severe" if a.severity_evidence is not None else ""
        return f"**B12 deficiency: {type_label}**" + (f" ({causes})" if causes else "") + severe

    def cause_note_lines(self, plan: Plan) -> list[str]:
        """What the record says about how long treatment lasts (resected length, T3)."""
        notes = plan.assessment.cause_notes
        return [f"Duration: {'; '.join(notes)}"] if notes else []

    def severity_lines(self, plan: Plan) -> list[str]:
        """Why the deficiency counts as severe: the reason the IM series is recommended (R6)."""
        evidence = plan.assessment.severity_evidence
        if evidence is None:
            return []
        why = "; ".join(line[2:] for line in evidence_lines(evidence))
        return [f"Severe ({why}): IM whatever the cause; oral only after IM loading."]

    def unconfirmed_lines(self, plan: Plan) -> list[str]:
        """Diagnoses on record as provisional / differential / unconfirmed, named as not used."""
        a = plan.assessment
        if not a.unconfirmed_evidence:
            return []
        return [
            "Not used: " + "; ".join(line[2:] for line in evidence_lines(a.unconfirmed_evidence))
        ]

    def citation_keys(self, plan: Plan) -> list[str]:
        a = plan.assessment
        keys = [*a.profile.citations]
        for s in plan.schedules:
            keys += s.regimen.citations
        for d in a.deficiency_rules:
            if d in self.protocol.rules.deficiency_rules:
                keys += self.protocol.rules.deficiency_rules[d].citations
        for m in plan.monitoring:
            keys += m.citations
        return keys

    def evidence_line(self, plan: Plan) -> str:
        """What confirmed the deficiency and its cause, between the schedule and the notes (a
        paragraph, so the two lists stay apart when the markdown is rendered)."""
        a = plan.assessment
        evidence = "; ".join(
            line[2:] for line in evidence_lines((*a.deficiency_evidence, *a.cause_evidence))
        )
        return f"**Evidence:** {evidence}"

    def note_lines(self, plan: Plan, ctx: HookContext) -> list[str]:
        """Below the evidence, one short bullet each: what is ordered with it, what to watch.

        What is not needed to act now (the maintenance interval, the sources) is on the
        schedule and protocol pages the card links to, and in the orders' notes.
        """
        a = plan.assessment
        lines = [
            *self.cause_note_lines(plan),
            *self.severity_lines(plan),
            *self.unconfirmed_lines(plan),
        ]
        if plan.monitoring:
            # The M-rule ids are in the footer line.
            lines.append("Also orders: " + ", ".join(m.name for m in plan.monitoring))
        rule = a.type_rule
        if rule is not None and not a.lifelong and (rule.review_card_note or rule.review_note):
            lines.append(rule.review_card_note or rule.review_note or "")
        if ctx.not_checked:
            lines.append("**Not checked** (not sent by the EHR): " + ", ".join(ctx.not_checked))
        age_note = self.protocol.rules.age_not_recorded
        if age_note and a.facts.age_on(a.day) is None:
            lines.append(age_note)
        set_aside = [*a.unusable, *a.stale, *a.conflicting]
        if set_aside:
            # Named in full on their cards (D9, D10); here only what they were.
            names = ", ".join(dict.fromkeys(self.title_of(r.analyte) for r in set_aside))
            lines.append(f"Set aside (see its card): {names}")
        lines.append("Untreated > 3 months risks permanent spinal-cord damage.")
        return [f"- {line}" for line in lines]

    def treatment_card(
        self,
        plan: Plan,
        series: Mapping[str, list[JSON]],
        ctx: HookContext,
        new_id: Callable[[], str],
    ) -> JSON:
        a = plan.assessment
        rec = plan.recommended
        assert rec is not None
        # T3 amended: the summary names the cause, so the type line does not repeat it.
        cause = (
            ", ".join(c.label for c in a.causes)
            if a.type_rule is not None and a.type_rule.id == "T3"
            else ""
        )
        detail = [
            self.type_line(plan, causes_in_summary=bool(cause)),
            "",
            *self.phase_lines(rec),
            "",
            self.evidence_line(plan),
            "",
            *self.note_lines(plan, ctx),
        ]
        monitoring = self.monitoring_actions(plan, ctx)
        suggestions = [
            s
            for s in (
                self.series_suggestion(plan, sched, series, ctx, new_id, monitoring=monitoring)
                for sched in plan.schedules
            )
            if s is not None
        ]
        return self.card(
            plan,
            "treatment",
            "warning",
            self.action_summary(rec, cause=cause),
            detail,
            new_id,
            suggestions,
            citations=self.citation_keys(plan),
            override=True,
            first_links=[self.schedule_link(plan, rec)],
        )

    def untreated_card(
        self,
        plan: Plan,
        series: Mapping[str, list[JSON]],
        ctx: HookContext,
        new_id: Callable[[], str],
    ) -> JSON:
        """On order hooks, when a B12-relevant order is drafted: the deficiency in brief."""
        rec = plan.recommended
        assert rec is not None
        suggestion = self.series_suggestion(plan, rec, series, ctx, new_id)
        return self.card(
            plan,
            "untreated-deficiency",
            "info",
            fit(f"Untreated B12 deficiency: {self.action_summary(rec, 'start')}"),
            [self.type_line(plan), "", "No B12 therapy is on record or in these orders."],
            new_id,
            [suggestion] if suggestion else None,
            citations=self.citation_keys(plan),
            first_links=[self.schedule_link(plan, rec)],
        )
