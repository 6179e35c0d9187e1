"""Checks of the draft orders being selected or signed: clinical decisions, so they live here.

Which B12 drafts a rule replaces with the IM series (S2 intravenous, S11 oral when not
enough), which duplicate current B12 therapy (S7),
and which match no proposed schedule's dose, route and frequency (R8) are decided against the
plan, with rule ids, so the card renderer only says what was decided. Pure: no HTTP, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cds_service.clinical.assessment import CONFIRMED
from cds_service.clinical.codes import CodeIndex, code_index
from cds_service.clinical.facts import CodedRecord
from cds_service.clinical.regimen import Plan
from cds_service.protocol import Protocol
from cds_service.protocol.model import Timing

#: R8: a B12 draft whose dose, route or frequency matches no proposed schedule.
OFF_PROTOCOL = "R8"


@dataclass(frozen=True)
class DraftReview:
    """What the checked drafts (all drafts; on order-select the selected ones) come to."""

    #: Checked draft medication orders that are B12 products (any ingredient, form or code).
    b12: tuple[CodedRecord, ...] = ()
    #: Per rule that replaces orders (S2 intravenous, S11 oral when not enough, as rules.yaml
    #: `replaces` says), the B12 drafts it replaces with the IM series.
    replaced: Mapping[str, tuple[CodedRecord, ...]] = field(default_factory=dict)
    #: S7: B12 drafts (not replaced) that duplicate current B12 therapy.
    duplicates: tuple[CodedRecord, ...] = ()
    #: R8: B12 drafts, with no current therapy, off the protocol's dose, route or frequency.
    off_protocol: tuple[CodedRecord, ...] = ()
    #: A checked draft is about B12: a B12 or folic acid product, or a B12 / MMA test.
    relevant: bool = False

    @property
    def intravenous(self) -> tuple[CodedRecord, ...]:
        return self.replaced.get("S2", ())

    @property
    def rule_ids(self) -> tuple[str, ...]:
        return (OFF_PROTOCOL,) if self.off_protocol else ()


class DraftReviewer:
    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self.codes = code_index(protocol)

    def is_b12(self, r: CodedRecord) -> bool:
        return self.codes.matches("b12_product", r.codings, r.words)

    def replaced_by(self, value_set: str, r: CodedRecord) -> bool:
        return replaced_by(self.codes, value_set, r)

    def on_protocol(self, r: CodedRecord, plan: Plan) -> bool:
        """The draft's dose, route and frequency match the first phase of some proposed schedule.

        Missing dose or timing is not compared (it cannot be shown to be off-protocol).
        """
        for schedule in plan.schedules:
            phase = schedule.phases[0].phase
            route = self.protocol.regimens.routes[phase.route].coding
            route_coding = (self.protocol.system_url(route.system), route.code)
            if r.dose_ug is not None and abs(r.dose_ug - phase.dose_ug) > 1e-6:
                continue
            if r.route_codings and route_coding not in r.route_codings:
                continue
            if r.timing and not timing_matches(r.timing, phase.timing):
                continue
            return True
        return False

    def review(self, plan: Plan, checked: Iterable[str]) -> DraftReview:
        """`checked`: references ("Type/id") of the drafts the hook asks about."""
        refs = set(checked)
        a = plan.assessment
        drafts = [r for r in a.facts.draft_medications if r.reference in refs]
        b12 = [r for r in drafts if self.is_b12(r)]
        tests = [r for r in a.facts.draft_service_requests if r.reference in refs]
        relevant = (
            bool(b12)
            or any(self.codes.matches("folic_acid_product", r.codings, r.words) for r in drafts)
            or any(self.codes.matches("b12_titration_test", r.codings, r.words) for r in tests)
        )
        if not b12:
            return DraftReview(relevant=relevant)
        replaced: dict[str, tuple[CodedRecord, ...]] = {}
        rest = list(b12)
        for finding in a.findings:
            value_set = finding.rule.replaces
            if value_set:
                mine = [r for r in rest if self.replaced_by(value_set, r)]
                if mine:
                    replaced[finding.rule.id] = tuple(mine)
                rest = [r for r in rest if r not in mine]
        active = [r for r in a.facts.medications if self.is_b12(r)]
        duplicates = rest if active and "S7" in a.flags else []
        off: list[CodedRecord] = []
        if not active and plan.recommended is not None and a.status == CONFIRMED:
            off = [r for r in rest if not self.on_protocol(r, plan)]
        return DraftReview(tuple(b12), replaced, tuple(duplicates), tuple(off), relevant=True)


def replaced_by(codes: CodeIndex, value_set: str, r: CodedRecord) -> bool:
    """An order a rule replaces, by its route or by its product (as rules.yaml reads it)."""
    return codes.matches(value_set, (*r.route_codings, *r.codings), f"{r.route_words} {r.words}")


def timing_matches(repeat: Mapping[str, object], timing: Timing | Any) -> bool:
    freq, period, unit = repeat.get("frequency"), repeat.get("period"), repeat.get("periodUnit")
    if freq is not None and freq != timing.frequency:
        return False
    if unit is not None and unit != timing.period_unit:
        return False
    if isinstance(period, int | float) and not isinstance(period, bool):
        high = timing.period_max if timing.period_max is not None else timing.period
        if not timing.period - 1e-9 <= float(period) <= high + 1e-9:
            return False
    return True
