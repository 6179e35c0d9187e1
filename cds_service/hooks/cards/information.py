"""Information cards about the record rather than a treatment: D4 (ask for MMA), D7 (very high
B12), D1 amended (unconfirmed diagnosis: ask for B12), inherited disorders (specialist),
results the rules could not use (D9) and latest results that disagree (D10)."""

from __future__ import annotations

from collections.abc import Callable

from cds_service.clinical.regimen import Plan
from cds_service.clinical.units import display_value
from cds_service.hooks.cards.parts import JSON, CardParts, HookContext, evidence_lines, fit
from cds_service.protocol.model import CardText, CodeEntry, DeficiencyRule


class InformationCards(CardParts):
    def deficiency_text(self, rule_id: str) -> tuple[DeficiencyRule, CardText]:
        """A D-rule and its card text, both from rules.yaml."""
        rule = self.protocol.rules.deficiency_rules[rule_id]
        if rule.card is None:
            raise LookupError(f"rules.yaml: {rule_id} has no card text")
        return rule, rule.card

    def test_suggestion(
        self,
        plan: Plan,
        ctx: HookContext,
        new_id: Callable[[], str],
        test: CodeEntry,
        name: str,
        reason: str,
        label: str,
    ) -> JSON:
        request = self.service_request(plan, ctx, test, name, reason)
        return {
            "label": label,
            "uuid": new_id(),
            "isRecommended": True,
            "actions": [
                {
                    "type": "create",
                    "description": f"Order {name} (LOINC {test.code})",
                    "resource": request,
                }
            ],
        }

    def unconfirmed_note(self, plan: Plan) -> list[str]:
        a = plan.assessment
        if not a.unconfirmed_evidence:
            return []
        return [
            "",
            "Diagnosis unconfirmed (provisional, differential or unconfirmed; not used):",
            *evidence_lines(a.unconfirmed_evidence),
        ]

    def mma_card(self, plan: Plan, ctx: HookContext, new_id: Callable[[], str]) -> JSON:
        a = plan.assessment
        mma = self.protocol.observations.analytes["mma"].codes[0]
        rule, text = self.deficiency_text("D4")
        suggestion = self.test_suggestion(
            plan,
            ctx,
            new_id,
            mma,
            "Methylmalonic acid (MMA), serum",
            "Borderline serum vitamin B12",
            "Order serum MMA",
        )
        detail = [
            text.detail,
            "",
            *evidence_lines(a.deficiency_evidence),
            *self.unconfirmed_note(plan),
        ]
        return self.card(
            plan,
            "borderline-b12",
            "info",
            text.summary,
            detail,
            new_id,
            [suggestion],
            citations=rule.citations,
            first_links=[self.rule_link("D4")],
        )

    def functional_deficiency_card(
        self, plan: Plan, ctx: HookContext, new_id: Callable[[], str]
    ) -> JSON:
        """D8: strong features with a normal or borderline B12 are never answered with silence."""
        a = plan.assessment
        rule, text = self.deficiency_text("D8")
        analytes = self.protocol.observations.analytes
        suggestions = [
            self.test_suggestion(
                plan,
                ctx,
                new_id,
                analytes[name].codes[0],
                f"Serum {label}",
                "Functional B12 deficiency suspected (D8)",
                f"Order serum {label}",
            )
            for name, label in (
                ("mma", "methylmalonic acid (MMA)"),
                ("homocysteine", "homocysteine"),
            )
        ]
        detail = [
            text.detail,
            "",
            *evidence_lines(a.deficiency_evidence),
            *self.unconfirmed_note(plan),
        ]
        return self.card(
            plan,
            "functional-deficiency",
            "warning",
            text.summary,
            detail,
            new_id,
            suggestions,
            citations=rule.citations,
            override=True,
            selection="any",
            first_links=[self.rule_link("D8")],
        )

    def unconfirmed_diagnosis_card(
        self, plan: Plan, ctx: HookContext, new_id: Callable[[], str]
    ) -> JSON:
        """D1 amended: an unconfirmed diagnosis with no usable B12 asks for the B12 test."""
        text = self.protocol.rules.unconfirmed_diagnosis
        if text is None:
            raise LookupError("rules.yaml: unconfirmed_diagnosis has no card text")
        b12 = self.protocol.observations.analytes["b12"].codes[0]
        suggestion = self.test_suggestion(
            plan,
            ctx,
            new_id,
            b12,
            "Vitamin B12, serum",
            "Unconfirmed vitamin B12 deficiency",
            "Order serum vitamin B12",
        )
        rule = self.protocol.rules.deficiency_rules["D1"]
        return self.card(
            plan,
            "unconfirmed-diagnosis",
            "info",
            text.summary,
            [text.detail, *self.unconfirmed_note(plan)],
            new_id,
            [suggestion],
            citations=rule.citations,
            first_links=[self.rule_link("D1")],
        )

    def medications_not_checked_card(self, plan: Plan, new_id: Callable[[], str]) -> JSON:
        """Medications that could be B12 or folic acid but could not be read, each with why."""
        text = self.protocol.rules.medications_not_checked
        if text is None:
            raise LookupError("rules.yaml: medications_not_checked has no card text")
        unchecked = plan.assessment.facts.unchecked_medications
        names = ", ".join(reference for reference, _ in unchecked)
        detail = [
            text.detail,
            "",
            *[f"- not checked: `{reference}`, {why}" for reference, why in unchecked],
        ]
        summary = fit(f"Not checked: {names}: could be B12 or folic acid", text.summary)
        return self.card(plan, "medications-not-checked", "warning", summary, detail, new_id)

    def very_high_card(self, plan: Plan, new_id: Callable[[], str]) -> JSON:
        rule, text = self.deficiency_text("D7")
        detail = [text.detail, "", *evidence_lines(plan.assessment.deficiency_evidence)]
        return self.card(
            plan,
            "very-high-b12",
            "info",
            text.summary,
            detail,
            new_id,
            citations=rule.citations,
            first_links=[self.rule_link("D7")],
        )

    def specialist_card(self, plan: Plan, new_id: Callable[[], str]) -> JSON:
        a = plan.assessment
        label = a.type_rule.label if a.type_rule else "Inherited disorder"
        detail = [
            f"**{label}.** This needs specialist (haematology / metabolic) care; the protocol "
            "proposes no schedule.",
            "",
            *evidence_lines((*a.deficiency_evidence, *a.cause_evidence)),
        ]
        summary = fit(f"{label}: refer to a specialist; no standard B12 schedule proposed")
        return self.card(
            plan,
            "specialist-referral",
            "warning",
            summary,
            detail,
            new_id,
            citations=a.profile.citations,
        )

    def unusable_card(self, plan: Plan, new_id: Callable[[], str]) -> JSON:
        a = plan.assessment
        rule, text = self.deficiency_text("D9")
        b12_used = "b12" in a.facts.results
        b12_unusable = [r for r in a.unusable if r.analyte == "b12"]
        b12_stale = [r for r in a.stale if r.analyte == "b12"]
        days = a.profile.result_recency_days
        advice: list[str] = []
        if not b12_used and (b12_unusable or b12_stale):
            advice.append("Repeat serum B12: no usable recent result is on record.")
        if any((r.problem or "").startswith("unknown unit") for r in a.unusable):
            advice.append("Check the unit with the laboratory.")
        names = ", ".join(
            dict.fromkeys(f"{self.title_of(r.analyte)} ({r.problem})" for r in a.unusable)
        )
        if not b12_used and b12_stale and not b12_unusable:
            summary = fit(
                f"No recent serum B12 (latest usable {b12_stale[0].date_text}, over {days} "
                "days old): repeat serum B12",
                text.summary,
            )
        elif not b12_used and b12_unusable:
            summary = fit(
                f"Serum B12 not usable ({b12_unusable[0].problem}): repeat serum B12",
                text.summary,
            )
        elif names:
            summary = fit(f"Not usable: {names}", text.summary)
        else:
            summary = text.summary
        # The general D9 text is on the protocol page (the Rule D9 link): the card names the
        # results themselves.
        detail = [
            *self.set_aside_lines(plan),
            *(["", *advice] if advice else []),
        ]
        return self.card(
            plan,
            "unusable-results",
            "info",
            summary,
            detail,
            new_id,
            citations=rule.citations,
            first_links=[self.rule_link("D9")],
        )

    def conflicting_card(self, plan: Plan, ctx: HookContext, new_id: Callable[[], str]) -> JSON:
        """D10: results of one time that disagree are each named, so the clinician sees why
        nothing was decided from them; a disagreeing B12 gets its repeat test suggested."""
        a = plan.assessment
        rule, text = self.deficiency_text("D10")
        conflicting = a.conflicting
        analytes = self.protocol.observations.analytes
        titles = list(dict.fromkeys(self.title_of(r.analyte) for r in conflicting))
        if len(titles) == 1:
            values = ", ".join(r.shown for r in conflicting)
            summary = fit(
                f"{titles[0]} results of {conflicting[0].date_text} disagree ({values}): "
                "repeat the test",
                f"{titles[0]} results of the same time disagree: repeat the test",
                text.summary,
            )
        else:
            summary = fit(f"Results of the same time disagree: {', '.join(titles)}", text.summary)
        detail = [
            text.detail,
            "",
            "**Disagree** (same time, none used)",
            *[
                f"- {self.title_of(r.analyte)} {display_value(r, analytes[r.analyte])} "
                f"({r.date_text}, `{r.reference}`)"
                for r in conflicting
            ],
        ]
        suggestions = []
        if any(r.analyte == "b12" for r in conflicting):
            suggestions.append(
                self.test_suggestion(
                    plan,
                    ctx,
                    new_id,
                    analytes["b12"].codes[0],
                    "Vitamin B12, serum",
                    "Serum vitamin B12 results of the same time disagree",
                    "Order serum vitamin B12",
                )
            )
        return self.card(
            plan,
            "conflicting-results",
            "warning",
            summary,
            detail,
            new_id,
            suggestions,
            citations=rule.citations,
            first_links=[self.rule_link("D10")],
        )
