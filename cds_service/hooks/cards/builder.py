"""Which cards one hook call answers with (protocol "Cards per hook").

patient-view: the treatment card, safety cards and information cards. order-select /
order-sign: cards about the orders being selected or signed (S2, S3, S7, R8, D6, unreadable
drafts, medications whose code no table knows) and critical safety findings; the record's other
cards only when a B12-relevant order is among them, and an untreated deficiency then as a
compact card, never the full treatment card on an unrelated order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from cds_service.clinical.assessment import CONFIRMED, INDETERMINATE, NOT_DEFICIENT, UNKNOWN
from cds_service.clinical.draft_orders import DraftReview, DraftReviewer
from cds_service.clinical.regimen import Plan
from cds_service.hooks.cards.orders import OrderCards
from cds_service.hooks.cards.parts import (
    INDICATOR_ORDER,
    JSON,
    ORDER_HOOKS,
    HookContext,
    absolute,
)
from cds_service.hooks.cards.safety import SafetyCards
from cds_service.ids import time_ordered_uuid
from cds_service.protocol import Protocol


class CardBuilder(SafetyCards, OrderCards):
    """Holds the protocol; `cards()` is pure given its arguments."""

    def __init__(self, protocol: Protocol) -> None:
        super().__init__(protocol)
        self.reviewer = DraftReviewer(protocol)

    def checked(self, ctx: HookContext) -> set[str]:
        """References of the drafts the hook asks about (order-select: the selected ones)."""
        refs = {
            f"{r.get('resourceType')}/{r.get('id')}"
            for r in ctx.draft_orders
            if isinstance(r.get("id"), str) and r.get("id")
        }
        if ctx.selections is not None:
            refs &= {_relative(s) for s in ctx.selections}
        return refs

    def cards(
        self,
        plan: Plan,
        series: Mapping[str, list[JSON]],
        ctx: HookContext,
        new_id: Callable[[], str] = time_ordered_uuid,
    ) -> list[JSON]:
        a = plan.assessment
        order_hook = ctx.hook in ORDER_HOOKS
        review = self.reviewer.review(plan, self.checked(ctx)) if order_hook else DraftReview()
        # On order hooks the record's own cards appear only beside a B12-relevant order (or a
        # draft that could not be read, or whose code no table knows: it may be one).
        unchecked = {reference for reference, _ in a.facts.unchecked_medications}
        unchecked_draft = bool(order_hook and unchecked & self.checked(ctx))
        about_record = (
            not order_hook or review.relevant or bool(a.facts.unreadable_drafts) or unchecked_draft
        )
        out: list[JSON] = []

        # With a switch (S2, S11) that finding's card carries the new course.
        if a.new_course and plan.recommended is not None and a.switch is None:
            if not order_hook:
                out.append(self.treatment_card(plan, series, ctx, new_id))
            elif about_record:
                out.append(self.untreated_card(plan, series, ctx, new_id))

        specialist = a.status == CONFIRMED and a.type_rule is not None and not a.type_rule.schedule
        if specialist and about_record:
            out.append(self.specialist_card(plan, new_id))

        for finding in a.findings:
            if about_record or finding.rule.indicator == "critical":
                out.append(self.safety_card(plan, finding, series, review, ctx, new_id))

        if review.off_protocol and plan.recommended is not None:
            out.append(self.off_protocol_card(plan, series, review.off_protocol, ctx, new_id))

        if about_record:
            if "D8" in a.deficiency_rules:  # asks for MMA itself, so it stands in for D4's card
                out.append(self.functional_deficiency_card(plan, ctx, new_id))
            elif a.status == INDETERMINATE and "D4" in a.deficiency_rules:
                out.append(self.mma_card(plan, ctx, new_id))
            if a.status == NOT_DEFICIENT and "D7" in a.deficiency_rules:
                out.append(self.very_high_card(plan, new_id))
            if a.status == UNKNOWN and a.unconfirmed_evidence:
                out.append(self.unconfirmed_diagnosis_card(plan, ctx, new_id))
            elif a.status == UNKNOWN and review.b12:
                out.append(self.no_deficiency_card(plan, new_id))
            if a.unusable or a.stale:
                out.append(self.unusable_card(plan, new_id))
            if a.conflicting:
                out.append(self.conflicting_card(plan, ctx, new_id))
        if a.facts.unreadable_drafts:
            out.append(self.drafts_not_checked_card(plan, new_id))
        if unchecked and about_record:
            out.append(self.medications_not_checked_card(plan, new_id))

        out.sort(key=lambda c: INDICATOR_ORDER[c["indicator"]])
        return absolute(out, ctx.base_url)


def _relative(reference: str) -> str:
    parts = reference.rstrip("/").split("/")
    return "/".join(parts[-2:]) if len(parts) >= 2 else reference
