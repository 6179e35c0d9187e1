"""CDS Hooks cards from a plan: pure functions, no HTTP.

What the cards say and when follows protocol.md: a treatment card for a confirmed deficiency that
needs a new course, one card per safety finding (S-rules), the D4 / D6 / D7 information cards,
checks of the draft orders being signed, and nothing at all when there is nothing to act on.
Every card names the profile and protocol version in its `source.topic` and lists the rules that
fired (in the detail and in `extension.rules`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from cds_service.clinical.assessment import CONFIRMED, INDETERMINATE, NOT_DEFICIENT, UNKNOWN
from cds_service.clinical.codes import code_index
from cds_service.clinical.facts import CodedRecord, Evidence
from cds_service.clinical.regimen import Plan, Schedule
from cds_service.fhir.dosage_text import frequency_phrase
from cds_service.fhir.medication_requests import coding, reference
from cds_service.protocol import Protocol
from cds_service.protocol.model import CardText, CodeEntry, DeficiencyRule

JSON = dict[str, Any]

SOURCE_LABEL = "B12 CDS"
TOPIC_SYSTEM = "https://b12-cds.example.org/CodeSystem/protocol-profile"
OVERRIDE_SYSTEM = "https://b12-cds.example.org/CodeSystem/override-reason"
OVERRIDE_REASONS: tuple[JSON, ...] = (
    {"system": OVERRIDE_SYSTEM, "code": "patient-declines-injections",
     "display": "Patient declines injections"},
    {"system": OVERRIDE_SYSTEM, "code": "treated-elsewhere",
     "display": "Treated elsewhere"},
    {"system": OVERRIDE_SYSTEM, "code": "clinical-judgement",
     "display": "Clinical judgement"},
)  # fmt: skip
INDICATOR_ORDER = {"critical": 0, "warning": 1, "info": 2}
MAX_SUMMARY = 139
ORDER_HOOKS = ("order-select", "order-sign")


@dataclass(frozen=True)
class HookContext:
    """What the cards need from the hook call besides the plan."""

    hook: str
    patient_id: str
    user_id: str | None = None
    encounter_id: str | None = None
    #: Resources of `context.draftOrders` (order-select / order-sign).
    draft_orders: tuple[Mapping[str, Any], ...] = ()
    #: `context.selections` (order-select): only these drafts are checked.
    selections: tuple[str, ...] | None = None
    #: Optional data that could not be obtained, named in the treatment card.
    not_checked: tuple[str, ...] = ()
    authored_on: date | None = None


def _summary(*candidates: str) -> str:
    """The first candidate that fits under 140 characters, else the last one shortened."""
    for text in candidates:
        if len(text) <= MAX_SUMMARY:
            return text
    return candidates[-1][: MAX_SUMMARY - 1].rstrip() + "…"


def _evidence_lines(items: Iterable[Evidence]) -> list[str]:
    lines: list[str] = []
    for e in items:
        line = f"- {e.text}" + (f" ({e.date})" if e.date else "") + f" — `{e.reference}`"
        if line not in lines:
            lines.append(line)
    return lines


class CardBuilder:
    """Holds the protocol and its code index; `cards()` is pure given its arguments."""

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self.codes = code_index(protocol)

    # -- shared parts -------------------------------------------------------------------------

    def source(self, plan: Plan) -> JSON:
        a = plan.assessment
        p = self.protocol
        return {
            "label": SOURCE_LABEL,
            "url": p.url,
            "topic": {
                "system": TOPIC_SYSTEM,
                "code": a.profile_name,
                "display": f"{a.profile_name} v{a.profile.version}, protocol {p.version}",
            },
        }

    def extension(self, plan: Plan, kind: str) -> JSON:
        a = plan.assessment
        return {
            "rules": list(plan.rule_ids),
            "card": kind,
            "profile": a.profile_name,
            "profileVersion": a.profile.version,
            "protocol": self.protocol.id,
            "protocolVersion": self.protocol.version,
            "status": a.status,
        }

    def citations(self, keys: Iterable[str]) -> list[str]:
        lines: list[str] = []
        seen: set[str] = set()
        for key in keys:
            if key in seen or key not in self.protocol.sources.sources:
                continue
            seen.add(key)
            src = self.protocol.sources.sources[key]
            lines.append(f"- [{src.title}]({src.url})" if src.url else f"- {src.title}")
        return lines

    def footer(self, plan: Plan, citation_keys: Iterable[str]) -> list[str]:
        a = plan.assessment
        lines = [
            "",
            f"**Rules fired:** {', '.join(plan.rule_ids) or 'none'}",
            "",
            f"**Protocol:** {self.protocol.title} {self.protocol.version}, profile "
            f"{a.profile_name} v{a.profile.version}",
        ]
        cites = self.citations(citation_keys)
        if cites:
            lines += ["", "**Sources**", *cites]
        return lines

    def card(
        self,
        plan: Plan,
        kind: str,
        indicator: str,
        summary: str,
        detail: list[str],
        new_id: Callable[[], str],
        suggestions: list[JSON] | None = None,
        override: bool = False,
        selection: str = "at-most-one",
    ) -> JSON:
        out: JSON = {
            "uuid": new_id(),
            "summary": summary,
            "detail": "\n".join(detail).strip(),
            "indicator": indicator,
            "source": self.source(plan),
        }
        if suggestions:
            out["suggestions"] = suggestions
            out["selectionBehavior"] = selection
        if override:
            out["overrideReasons"] = [dict(r) for r in OVERRIDE_REASONS]
        out["extension"] = self.extension(plan, kind)
        return out

    def schedule_table(self, schedule: Schedule) -> list[str]:
        rows = [
            "| # | Phase | Dose | Route | Frequency | Doses | Start | End |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for p in schedule.phases:
            t = p.phase.timing
            end = p.end.isoformat() if p.end else ("lifelong" if schedule.lifelong else "review")
            rows.append(
                f"| {p.index + 1} | {p.phase.title} | {p.phase.dose_ug:g} mcg | {p.phase.route} "
                f"| {frequency_phrase(t)} | {t.count or '-'} | {p.start.isoformat()} | {end} |"
            )
        notes = [
            f"- Phase {p.index + 1}: {p.phase.condition}"
            for p in schedule.phases
            if p.phase.condition
        ]
        return rows + ([""] + notes if notes else [])

    def series_suggestion(
        self,
        schedule: Schedule,
        series: Mapping[str, list[JSON]],
        new_id: Callable[[], str],
        *,
        label: str | None = None,
        deletes: Iterable[str] = (),
    ) -> JSON | None:
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
                    "description": _summary(f"Create: {text}", f"Create phase {r.get('id', '')}"),
                    "resource": r,
                }
            )
        tag = "Recommended" if schedule.recommended else "Alternative"
        return {
            "label": label or f"{tag}: {schedule.regimen.title}",
            "uuid": new_id(),
            "isRecommended": schedule.recommended,
            "actions": actions,
        }

    # -- draft orders ---------------------------------------------------------------------------

    def _checked_drafts(self, plan: Plan, ctx: HookContext) -> list[CodedRecord]:
        """Draft medication orders of the hook context (order-select: the selected ones)."""
        if ctx.hook not in ORDER_HOOKS:
            return []
        refs = {
            f"{r.get('resourceType')}/{r.get('id')}"
            for r in ctx.draft_orders
            if isinstance(r.get("id"), str) and r.get("id")
        }
        if ctx.selections is not None:
            refs &= {_relative(s) for s in ctx.selections}
        return [r for r in plan.assessment.facts.draft_medications if r.reference in refs]

    def is_b12(self, r: CodedRecord) -> bool:
        return self.codes.matches("b12_product", r.codings, r.words)

    def replaced_by(self, value_set: str, r: CodedRecord) -> bool:
        """An order a rule replaces, by its route or by its product (as rules.yaml reads it)."""
        return self.codes.matches(
            value_set, (*r.route_codings, *r.codings), f"{r.route_words} {r.words}"
        )

    def switch_detail(self, plan: Plan, replaces: str) -> list[str]:
        """The course the switch card proposes, and the current orders it replaces."""
        rec = plan.recommended
        assert rec is not None
        a = plan.assessment
        current = [
            f"- {r.label} ({r.status or 'order'}) — `{r.reference}`"
            for r in a.b12_therapy
            if r.status != "draft" and self.replaced_by(replaces, r)
        ]
        lines: list[str] = [
            "",
            f"**Switch to** ({rec.rule_id}): {rec.regimen.title}",
            "",
            *self.schedule_table(rec),
        ]
        if current:
            lines += ["", "**Stop when the first injection is given:**", *current]
        lines += self.cause_note_lines(plan) + self.severity_lines(plan)
        return lines

    def switch_suggestions(
        self,
        plan: Plan,
        series: Mapping[str, list[JSON]],
        replaced: list[CodedRecord],
        new_id: Callable[[], str],
    ) -> list[JSON]:
        """The IM schedules of the plan, each deleting the drafts being replaced."""
        deletes = [r.reference for r in replaced]
        out = []
        for schedule in plan.schedules:
            if any(p.phase.route != "intramuscular" for p in schedule.phases):
                continue
            tag = "Switch to" if schedule.recommended else "Alternative: switch to"
            suggestion = self.series_suggestion(
                schedule,
                series,
                new_id,
                label=_summary(f"{tag} {schedule.regimen.title}"),
                deletes=deletes,
            )
            if suggestion is not None:
                out.append(suggestion)
        return out

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
            if r.timing and not _timing_matches(r.timing, phase.timing):
                continue
            return True
        return False

    # -- the cards ---------------------------------------------------------------------------

    def cards(
        self,
        plan: Plan,
        series: Mapping[str, list[JSON]],
        ctx: HookContext,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> list[JSON]:
        a = plan.assessment
        out: list[JSON] = []
        drafts = self._checked_drafts(plan, ctx)
        b12_drafts = [r for r in drafts if self.is_b12(r)]
        active_b12 = [r for r in a.facts.medications if self.is_b12(r)]
        handled: set[str] = set()

        switch = a.switch
        if a.new_course and plan.recommended is not None:
            if switch is None:
                out.append(self.treatment_card(plan, series, ctx, new_id))
            if plan.monitoring:
                out.append(self.monitoring_card(plan, ctx, new_id))

        if a.status == CONFIRMED and a.type_rule is not None and not a.type_rule.schedule:
            out.append(self.specialist_card(plan, new_id))

        for finding in a.findings:
            rule = finding.rule
            detail = [rule.detail, ""]
            if finding.evidence:
                detail += ["**Evidence**", *_evidence_lines(finding.evidence)]
            suggestions: list[JSON] = []
            if rule.replaces:
                replaced = [
                    r
                    for r in b12_drafts
                    if r.reference not in handled and self.replaced_by(rule.replaces, r)
                ]
                if finding is switch:
                    detail += self.switch_detail(plan, rule.replaces)
                    suggestions += self.switch_suggestions(plan, series, replaced, new_id)
                elif replaced:
                    suggestions += self._replace(plan, series, replaced, new_id, "IM series")
                handled |= {r.reference for r in replaced}
            if rule.id == "S7":
                duplicates = [r for r in b12_drafts if r.reference not in handled]
                if active_b12 and duplicates:
                    detail += [
                        "",
                        "The B12 order being signed duplicates the current B12 therapy.",
                    ]
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
                                for r in duplicates
                            ],
                        }
                    )
                    handled |= {r.reference for r in duplicates}
                if a.schedule_allowed and plan.recommended is not None:
                    detail += [
                        "",
                        f"**Protocol schedule, for reference** ({plan.recommended.rule_id}): "
                        f"{plan.recommended.regimen.title}",
                        "",
                        *self.schedule_table(plan.recommended),
                    ]
            detail += self.footer(plan, rule.citations)
            out.append(
                self.card(
                    plan,
                    f"safety-{rule.id}",
                    rule.indicator,
                    rule.summary,
                    detail,
                    new_id,
                    suggestions,
                    override=bool(suggestions),
                )
            )

        off = [
            r
            for r in b12_drafts
            if r.reference not in handled and not active_b12 and not self.on_protocol(r, plan)
        ]
        if off and plan.recommended is not None and a.status == CONFIRMED:
            out.append(self.off_protocol_card(plan, series, off, new_id))

        if "D8" in a.deficiency_rules:  # asks for MMA itself, so it stands in for D4's card
            out.append(self.functional_deficiency_card(plan, ctx, new_id))
        elif a.status == INDETERMINATE and "D4" in a.deficiency_rules:
            out.append(self.mma_card(plan, ctx, new_id))
        if a.status == NOT_DEFICIENT and "D7" in a.deficiency_rules:
            out.append(self.very_high_card(plan, new_id))
        if a.status == UNKNOWN and a.unconfirmed_evidence:
            out.append(self.unconfirmed_diagnosis_card(plan, ctx, new_id))
        elif a.status == UNKNOWN and b12_drafts:
            out.append(self.no_deficiency_card(plan, new_id))
        if a.unusable or a.stale:
            out.append(self.unusable_card(plan, new_id))
        if a.facts.unreadable_drafts:
            out.append(self.drafts_not_checked_card(plan, new_id))

        out.sort(key=lambda c: INDICATOR_ORDER[c["indicator"]])
        return out

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
            *self.footer(plan, ()),
        ]
        summary = _summary(f"Not checked: {names}", f"{len(drafts)} draft orders not checked")
        return self.card(plan, "draft-order-not-checked", "warning", summary, detail, new_id)

    def _replace(
        self,
        plan: Plan,
        series: Mapping[str, list[JSON]],
        drafts: list[CodedRecord],
        new_id: Callable[[], str],
        what: str,
    ) -> list[JSON]:
        refs = [r.reference for r in drafts]
        if plan.recommended is not None and plan.assessment.new_course:
            suggestion = self.series_suggestion(
                plan.recommended,
                series,
                new_id,
                label=_summary(f"Replace the draft order with the {what}"),
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
        type_label = a.type_rule.label if a.type_rule else "cause not identified"
        causes = ", ".join(c.label for c in a.causes if c.id != "unspecified")
        # The cause in plain words ("short bowel syndrome"), the type only when no cause is named.
        summary = _summary(
            f"B12 deficiency ({causes or type_label.lower()}): start {rec.regimen.title}",
            f"B12 deficiency: start {rec.regimen.title}",
        )
        detail = [
            f"**Vitamin B12 deficiency confirmed.** Type: {type_label}"
            + (f"; cause: {causes}" if causes else "")
            + f". Severity: {a.severity}.",
            "",
            "Left untreated for more than 3 months, B12 deficiency can leave permanent "
            "spinal-cord damage.",
            "",
            "**Evidence**",
            *_evidence_lines((*a.deficiency_evidence, *a.cause_evidence)),
            *self.cause_note_lines(plan),
            *self.severity_lines(plan),
            "",
            f"**Recommended schedule** ({rec.rule_id}): {rec.regimen.title}",
            "",
            *self.schedule_table(rec),
        ]
        for alt in plan.alternatives:
            detail += ["", f"**Alternative** ({alt.rule_id}): {alt.regimen.title}", ""]
            detail += self.schedule_table(alt)
        detail += self.unconfirmed_lines(plan)
        if plan.monitoring:
            detail += ["", "**Monitoring**", *[f"- {m.id}: {m.text}" for m in plan.monitoring]]
        detail += ["", f"**Maintenance:** {self.protocol.rules.maintenance_note}"]
        if a.type_rule is not None and a.type_rule.review_note and not a.lifelong:
            detail += ["", f"**Cause not found:** {a.type_rule.review_note}"]
        detail += self.set_aside_lines(plan)
        if ctx.not_checked:
            detail += [
                "",
                "**Not checked** (not provided by the EHR): " + ", ".join(ctx.not_checked),
            ]
        keys = [*a.profile.citations]
        for s in plan.schedules:
            keys += s.regimen.citations
        for m in plan.monitoring:
            keys += m.citations
        for d in a.deficiency_rules:
            if d in self.protocol.rules.deficiency_rules:
                keys += self.protocol.rules.deficiency_rules[d].citations
        detail += self.footer(plan, keys)
        suggestions = [
            s
            for s in (self.series_suggestion(sched, series, new_id) for sched in plan.schedules)
            if s is not None
        ]
        return self.card(
            plan, "treatment", "warning", summary, detail, new_id, suggestions, override=True
        )

    def specialist_card(self, plan: Plan, new_id: Callable[[], str]) -> JSON:
        a = plan.assessment
        label = a.type_rule.label if a.type_rule else "Inherited disorder"
        detail = [
            f"**{label}.** This needs specialist (haematology / metabolic) care; the protocol "
            "proposes no schedule.",
            "",
            "**Evidence**",
            *_evidence_lines((*a.deficiency_evidence, *a.cause_evidence)),
            *self.footer(plan, a.profile.citations),
        ]
        summary = _summary(f"{label}: refer to a specialist; no standard B12 schedule proposed")
        return self.card(plan, "specialist-referral", "warning", summary, detail, new_id)

    def off_protocol_card(
        self,
        plan: Plan,
        series: Mapping[str, list[JSON]],
        drafts: list[CodedRecord],
        new_id: Callable[[], str],
    ) -> JSON:
        rec = plan.recommended
        assert rec is not None
        first = rec.phases[0].phase
        lines = []
        for r in drafts:
            repeat = r.timing or {}
            every = (
                f"{repeat.get('frequency', '?')} per {repeat.get('period', '?')} "
                f"{repeat.get('periodUnit', '?')}"
                if repeat
                else "no timing"
            )
            dose = f"{r.dose_ug:g} mcg" if r.dose_ug is not None else "no dose"
            lines.append(f"- `{r.reference}`: {r.label}, {dose}, {every}")
        detail = [
            "The B12 order being signed does not match the protocol's dose, route or frequency.",
            "",
            "**Draft order(s)**",
            *lines,
            "",
            f"**Protocol** ({rec.rule_id}): {rec.regimen.title}; first phase {first.dose_ug:g} mcg "
            f"{first.route}, {frequency_phrase(first.timing)}.",
            "",
            *self.schedule_table(rec),
            *self.footer(plan, rec.regimen.citations),
        ]
        suggestions = self._replace(plan, series, drafts, new_id, "protocol series")
        return self.card(
            plan,
            "draft-order-off-protocol",
            "warning",
            "B12 order differs from the protocol dose or frequency: review before signing",
            detail,
            new_id,
            suggestions,
            override=True,
        )

    def service_request(
        self,
        plan: Plan,
        ctx: HookContext,
        test: CodeEntry,
        text: str,
        reason: str,
        when: date | None = None,
    ) -> JSON:
        """A proposed laboratory test (draft), coded with the protocol's verified LOINC entry."""
        request: JSON = {
            "resourceType": "ServiceRequest",
            "status": "draft",
            "intent": "proposal",
            "code": {"coding": [coding(self.protocol, test)], "text": text},
            "subject": {"reference": f"Patient/{ctx.patient_id}"},
            "authoredOn": (ctx.authored_on or plan.start).isoformat(),
            "reasonCode": [{"text": reason}],
        }
        if when is not None:
            request["occurrenceDateTime"] = when.isoformat()
        if ctx.user_id and "/" in ctx.user_id:
            request["requester"] = {"reference": ctx.user_id}
        if ctx.encounter_id:
            request["encounter"] = reference(ctx.encounter_id, "Encounter")
        return request

    def monitoring_card(self, plan: Plan, ctx: HookContext, new_id: Callable[[], str]) -> JSON:
        """The M-rules as optional test orders; any, all or none may be accepted."""
        suggestions = [
            {
                "label": f"Order {m.test.display or m.test.code} ({m.id})",
                "uuid": new_id(),
                "actions": [
                    {
                        "type": "create",
                        "description": m.text,
                        "resource": self.service_request(
                            plan,
                            ctx,
                            m.test,
                            m.test.display or m.test.code,
                            f"B12 treatment monitoring ({m.id})",
                            plan.start + timedelta(days=m.offset_days),
                        ),
                    }
                ],
            }
            for m in plan.monitoring
        ]
        detail = [f"- **{m.id}** {m.text}" for m in plan.monitoring]
        keys = [k for m in plan.monitoring for k in m.citations]
        tests = ", ".join(m.name for m in plan.monitoring)
        return self.card(
            plan,
            "monitoring",
            "info",
            _summary(f"Monitoring for the B12 schedule: {tests}"),
            [*detail, *self.footer(plan, keys)],
            new_id,
            suggestions,
            selection="any",
        )

    def mma_card(self, plan: Plan, ctx: HookContext, new_id: Callable[[], str]) -> JSON:
        a = plan.assessment
        mma = self.protocol.observations.analytes["mma"].codes[0]
        request = self.service_request(
            plan, ctx, mma, "Methylmalonic acid (MMA), serum", "Borderline serum vitamin B12"
        )
        rule, text = self._deficiency_card("D4")
        detail = [
            text.detail,
            "",
            "**Evidence**",
            *_evidence_lines(a.deficiency_evidence),
            *self.unconfirmed_lines(plan),
            *self.footer(plan, rule.citations),
        ]
        suggestion = {
            "label": "Order serum methylmalonic acid (MMA)",
            "uuid": new_id(),
            "isRecommended": True,
            "actions": [
                {
                    "type": "create",
                    "description": f"Order serum methylmalonic acid (LOINC {mma.code})",
                    "resource": request,
                }
            ],
        }
        return self.card(
            plan,
            "borderline-b12",
            "info",
            text.summary,
            detail,
            new_id,
            [suggestion],
        )

    def functional_deficiency_card(
        self, plan: Plan, ctx: HookContext, new_id: Callable[[], str]
    ) -> JSON:
        """D8: strong features with a normal or borderline B12 are never answered with silence."""
        a = plan.assessment
        rule, text = self._deficiency_card("D8")
        analytes = self.protocol.observations.analytes
        suggestions = []
        for name, label in (("mma", "methylmalonic acid (MMA)"), ("homocysteine", "homocysteine")):
            test = analytes[name].codes[0]
            request = self.service_request(
                plan, ctx, test, f"Serum {label}", "Functional B12 deficiency suspected (D8)"
            )
            suggestions.append(
                {
                    "label": f"Order serum {label}",
                    "uuid": new_id(),
                    "isRecommended": True,
                    "actions": [
                        {
                            "type": "create",
                            "description": f"Order serum {label} (LOINC {test.code})",
                            "resource": request,
                        }
                    ],
                }
            )
        detail = [
            text.detail,
            "",
            "**Evidence**",
            *_evidence_lines(a.deficiency_evidence),
            *self.unconfirmed_lines(plan),
            *self.footer(plan, rule.citations),
        ]
        return self.card(
            plan,
            "functional-deficiency",
            "warning",
            text.summary,
            detail,
            new_id,
            suggestions,
            override=True,
            selection="any",
        )

    def cause_note_lines(self, plan: Plan) -> list[str]:
        """What the record says about how long treatment lasts (resected length, T3)."""
        notes = plan.assessment.cause_notes
        return ["", "**Duration**", *[f"- {n}" for n in notes]] if notes else []

    def severity_lines(self, plan: Plan) -> list[str]:
        """Why the deficiency counts as severe: the reason the IM series is recommended (R6)."""
        evidence = plan.assessment.severity_evidence
        if evidence is None:
            return []
        lines = [
            "",
            "**Severe deficiency:** intramuscular treatment is recommended whatever the cause; "
            "oral B12 is offered only after IM loading, as an alternative.",
        ]
        return lines + _evidence_lines(evidence)

    def unconfirmed_lines(self, plan: Plan) -> list[str]:
        """Diagnoses on record as provisional / differential / unconfirmed, named as not used."""
        a = plan.assessment
        if not a.unconfirmed_evidence:
            return []
        return [
            "",
            "**Diagnosis unconfirmed** (provisional, differential or unconfirmed; not used to "
            "confirm the deficiency or its type):",
            *_evidence_lines(a.unconfirmed_evidence),
        ]

    def unconfirmed_diagnosis_card(
        self, plan: Plan, ctx: HookContext, new_id: Callable[[], str]
    ) -> JSON:
        """D1 amended: an unconfirmed diagnosis with no usable B12 asks for the B12 test."""
        text = self.protocol.rules.unconfirmed_diagnosis
        if text is None:
            raise LookupError("rules.yaml: unconfirmed_diagnosis has no card text")
        b12 = self.protocol.observations.analytes["b12"].codes[0]
        request = self.service_request(
            plan, ctx, b12, "Vitamin B12, serum", "Unconfirmed vitamin B12 deficiency"
        )
        rule = self.protocol.rules.deficiency_rules["D1"]
        detail = [
            text.detail,
            *self.unconfirmed_lines(plan),
            *self.footer(plan, rule.citations),
        ]
        suggestion = {
            "label": "Order serum vitamin B12",
            "uuid": new_id(),
            "isRecommended": True,
            "actions": [
                {
                    "type": "create",
                    "description": f"Order serum vitamin B12 (LOINC {b12.code})",
                    "resource": request,
                }
            ],
        }
        return self.card(
            plan, "unconfirmed-diagnosis", "info", text.summary, detail, new_id, [suggestion]
        )

    def _deficiency_card(self, rule_id: str) -> tuple[DeficiencyRule, CardText]:
        """A D-rule and its card text, both from rules.yaml."""
        rule = self.protocol.rules.deficiency_rules[rule_id]
        if rule.card is None:
            raise LookupError(f"rules.yaml: {rule_id} has no card text")
        return rule, rule.card

    def very_high_card(self, plan: Plan, new_id: Callable[[], str]) -> JSON:
        a = plan.assessment
        rule, text = self._deficiency_card("D7")
        detail = [
            text.detail,
            "",
            "**Evidence**",
            *_evidence_lines(a.deficiency_evidence),
            *self.footer(plan, rule.citations),
        ]
        return self.card(
            plan,
            "very-high-b12",
            "info",
            text.summary,
            detail,
            new_id,
        )

    def no_deficiency_card(self, plan: Plan, new_id: Callable[[], str]) -> JSON:
        rule, text = self._deficiency_card("D6")
        detail = [text.detail, *self.footer(plan, rule.citations)]
        return self.card(
            plan,
            "no-confirmed-deficiency",
            "info",
            text.summary,
            detail,
            new_id,
        )

    def title_of(self, analyte: str) -> str:
        spec = self.protocol.observations.analytes.get(analyte)
        return spec.title if spec else analyte

    def set_aside_lines(self, plan: Plan) -> list[str]:
        """Results no rule used, each with its reason (protocol D9): never silently dropped."""
        a = plan.assessment
        lines: list[str] = []
        if a.unusable:
            lines += ["", "**Not usable** (set aside, never a reason to treat)"]
            lines += [
                f"- {self.title_of(r.analyte)} {r.shown} ({r.date_text}): {r.problem} — "
                f"`{r.reference}`"
                for r in a.unusable
            ]
        if a.stale:
            days = a.profile.result_recency_days
            lines += ["", f"**Stale** (older than {days} days or undated, not used)"]
            lines += [
                f"- {self.title_of(r.analyte)} {r.shown} ({r.date_text}) — `{r.reference}`"
                for r in a.stale
            ]
        return lines

    def unusable_card(self, plan: Plan, new_id: Callable[[], str]) -> JSON:
        a = plan.assessment
        rule, text = self._deficiency_card("D9")
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
            summary = _summary(
                f"No recent serum B12 (latest usable {b12_stale[0].date_text}, over {days} "
                "days old): repeat serum B12",
                text.summary,
            )
        elif not b12_used and b12_unusable:
            summary = _summary(
                f"Serum B12 not usable ({b12_unusable[0].problem}): repeat serum B12",
                text.summary,
            )
        elif names:
            summary = _summary(f"Not usable: {names}", text.summary)
        else:
            summary = text.summary
        detail = [
            text.detail,
            *self.set_aside_lines(plan),
            *(["", *advice] if advice else []),
            *self.footer(plan, rule.citations),
        ]
        return self.card(plan, "unusable-results", "info", summary, detail, new_id)


def _relative(reference: str) -> str:
    parts = reference.rstrip("/").split("/")
    return "/".join(parts[-2:]) if len(parts) >= 2 else reference


def _timing_matches(repeat: Mapping[str, object], timing: Any) -> bool:
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
