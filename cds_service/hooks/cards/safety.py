"""One card per safety finding (S-rules), with the draft-order corrections the core decided.

S2 (intravenous) and S11 (oral when not enough) replace orders with the IM series: when a new
course is due, the card of the rule that replaces the current therapy carries it in place of
the treatment card ("switch"). S7 removes B12 drafts that duplicate current therapy. Which
drafts those are is decided in `clinical.draft_orders`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from cds_service.clinical.assessment import Finding
from cds_service.clinical.draft_orders import DraftReview, replaced_by
from cds_service.clinical.facts import CodedRecord
from cds_service.clinical.regimen import Plan
from cds_service.hooks.cards.parts import JSON, HookContext, evidence_lines, fit
from cds_service.hooks.cards.treatment import LABEL_LIMIT, TreatmentCards


class SafetyCards(TreatmentCards):
    def switch_lines(self, plan: Plan, replaces: str) -> list[str]:
        """The course the switch card proposes, and the current orders it replaces."""
        rec = plan.recommended
        assert rec is not None
        a = plan.assessment
        current = [
            f"- {r.label} ({r.status or 'order'})"
            for r in a.b12_therapy
            if r.status != "draft" and replaced_by(self.codes, replaces, r)
        ]
        lines = ["", "Switch to:", *self.phase_lines(rec)]
        if current:
            lines += ["", "Stop when the first injection is given:", *current]
        severity = self.severity_lines(plan)
        return lines + (["", *severity] if severity else [])

    def switch_suggestions(
        self,
        plan: Plan,
        series: Mapping[str, list[JSON]],
        replaced: Iterable[CodedRecord],
        ctx: HookContext,
        new_id: Callable[[], str],
    ) -> list[JSON]:
        """The IM schedules of the plan, each deleting the drafts being replaced."""
        deletes = [r.reference for r in replaced]
        monitoring: list[JSON] | None = None
        out = []
        for schedule in plan.schedules:
            if any(p.phase.route != "intramuscular" for p in schedule.phases):
                continue
            if monitoring is None:
                monitoring = self.monitoring_actions(plan, ctx)
            tag = "Switch to" if schedule.recommended else "Alt: switch to"
            suggestion = self.series_suggestion(
                plan,
                schedule,
                series,
                ctx,
                new_id,
                label=fit(f"{tag} {self.shape(schedule)}", limit=LABEL_LIMIT),
                deletes=deletes,
                monitoring=monitoring,
            )
            if suggestion is not None:
                out.append(suggestion)
        return out

    def safety_card(
        self,
        plan: Plan,
        finding: Finding,
        series: Mapping[str, list[JSON]],
        review: DraftReview,
        ctx: HookContext,
        new_id: Callable[[], str],
    ) -> JSON:
        a = plan.assessment
        rule = finding.rule
        detail = [rule.detail]
        if finding.evidence:
            detail += ["", *evidence_lines(finding.evidence)]
        concerned: tuple[CodedRecord, ...] = review.replaced.get(rule.id, ())
        if rule.id == "S7":
            concerned = review.duplicates or review.b12
        if concerned:
            detail += ["", *[f"- Being signed: {r.label} (`{r.reference}`)" for r in concerned]]
        suggestions: list[JSON] = []
        links: list[JSON] = []
        if rule.replaces:
            replaced = review.replaced.get(rule.id, ())
            if finding is a.switch and plan.recommended is not None:
                detail += self.switch_lines(plan, rule.replaces)
                suggestions += self.switch_suggestions(plan, series, replaced, ctx, new_id)
                links.append(self.schedule_link(plan, plan.recommended))
            elif replaced:
                suggestions += self.replace_suggestions(plan, series, replaced, ctx, new_id)
        if rule.id == "S7":
            if review.duplicates:
                detail += ["", "The B12 order being signed duplicates the current B12 therapy."]
                suggestions.append(
                    {
                        "label": "Remove the duplicate B12 order",
                        "uuid": new_id(),
                        "actions": [
                            {
                                "type": "delete",
                                "description": f"Remove the draft order {r.reference}",
                                "resourceId": r.reference,
                            }
                            for r in review.duplicates
                        ],
                    }
                )
            if a.schedule_allowed and plan.recommended is not None:
                detail += [
                    "",
                    "Protocol schedule, for reference:",
                    *self.phase_lines(plan.recommended),
                ]
                links.append(self.schedule_link(plan, plan.recommended))
        return self.card(
            plan,
            f"safety-{rule.id}",
            rule.indicator,
            rule.summary,
            detail,
            new_id,
            suggestions,
            citations=[*rule.citations],
            override=bool(suggestions),
            first_links=[*links, self.rule_link(rule.id)],
        )
