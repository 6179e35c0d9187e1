"""Cards about the draft orders themselves (order-select / order-sign): R8 off-protocol,
D6 (a B12 order with no confirmed deficiency) and drafts that could not be read."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from cds_service.clinical.draft_orders import OFF_PROTOCOL
from cds_service.clinical.facts import CodedRecord
from cds_service.clinical.regimen import Plan
from cds_service.hooks.cards.information import InformationCards
from cds_service.hooks.cards.parts import JSON, HookContext, fit
from cds_service.hooks.cards.treatment import TreatmentCards


def draft_line(r: CodedRecord) -> str:
    repeat = r.timing or {}
    every = (
        f"{repeat.get('frequency', '?')} per {repeat.get('period', '?')} "
        f"{repeat.get('periodUnit', '?')}"
        if repeat
        else "no timing"
    )
    dose = f"{r.dose_ug:g} mcg" if r.dose_ug is not None else "no dose"
    return f"- {r.label}: {dose}, {every}"


class OrderCards(TreatmentCards, InformationCards):
    def off_protocol_card(
        self,
        plan: Plan,
        series: Mapping[str, list[JSON]],
        drafts: Iterable[CodedRecord],
        ctx: HookContext,
        new_id: Callable[[], str],
    ) -> JSON:
        rec = plan.recommended
        assert rec is not None
        rule = self.protocol.rules.draft_order_rules[OFF_PROTOCOL]
        drafts = list(drafts)
        detail = [
            rule.detail,
            "",
            "Being signed:",
            *[draft_line(r) for r in drafts],
            "",
            "Protocol:",
            *self.phase_lines(rec),
        ]
        return self.card(
            plan,
            "draft-order-off-protocol",
            rule.indicator,
            rule.summary,
            detail,
            new_id,
            self.replace_suggestions(plan, series, drafts, ctx, new_id),
            citations=[*rule.citations, *rec.regimen.citations],
            override=True,
            extra_rules=[OFF_PROTOCOL],
            first_links=[self.schedule_link(plan, rec), self.rule_link(OFF_PROTOCOL)],
        )

    def no_deficiency_card(self, plan: Plan, new_id: Callable[[], str]) -> JSON:
        rule, text = self.deficiency_text("D6")
        return self.card(
            plan,
            "no-confirmed-deficiency",
            "info",
            text.summary,
            [text.detail],
            new_id,
            citations=rule.citations,
            first_links=[self.rule_link("D6")],
        )

    def drafts_not_checked_card(self, plan: Plan, new_id: Callable[[], str]) -> JSON:
        """Draft orders that could not be read: the rest of the answer is given without them."""
        drafts = plan.assessment.facts.unreadable_drafts
        names = ", ".join(reference for reference, _ in drafts)
        detail = [
            "A field the rules read in these draft orders has the wrong type, so they were "
            "**not checked** against the protocol (dose, route, duplicates, folic acid before "
            "B12). Check them by hand.",
            "",
            *[f"- not checked: `{reference}`, {why}" for reference, why in drafts],
        ]
        summary = fit(f"Not checked: {names}", f"{len(drafts)} draft orders not checked")
        return self.card(plan, "draft-order-not-checked", "warning", summary, detail, new_id)
