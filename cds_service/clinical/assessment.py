"""Assessment: deficiency status (D-rules), type (T-rules), safety and severity (S-rules).

The D-rules are the fixed diagnostic algorithm of the protocol with thresholds from the profile;
T- and S-rules are read from the tables. Everything that fired keeps its evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date

from cds_service.clinical.codes import code_index
from cds_service.clinical.expressions import Scope, evaluate
from cds_service.clinical.facts import CodedRecord, Evidence, Facts, LabResult
from cds_service.clinical.units import display_value, threshold_value
from cds_service.protocol import Protocol
from cds_service.protocol.model import Cause, Profile, SafetyRule, TypeRule

CONFIRMED = "confirmed"
INDETERMINATE = "indeterminate"
NOT_DEFICIENT = "not-deficient"
UNKNOWN = "unknown"
SEVERE = "severe"


@dataclass(frozen=True)
class Finding:
    """A safety rule that fired, with what it saw."""

    rule: SafetyRule
    evidence: tuple[Evidence, ...]


@dataclass(frozen=True)
class Assessment:
    profile_name: str
    profile: Profile
    day: date
    facts: Facts
    status: str
    deficiency_rules: tuple[str, ...]
    deficiency_evidence: tuple[Evidence, ...]
    type_rule: TypeRule | None
    causes: tuple[Cause, ...]
    cause_evidence: tuple[Evidence, ...]
    findings: tuple[Finding, ...]
    b12_therapy: tuple[CodedRecord, ...]
    #: Diagnoses recorded as provisional, differential or unconfirmed that would otherwise have
    #: confirmed the deficiency (D1) or set its type: shown, never used (protocol D1 amended).
    unconfirmed_evidence: tuple[Evidence, ...] = ()
    #: The causes that make treatment lifelong (an ileal resection of 20 cm or less does not).
    lifelong_causes: frozenset[str] = frozenset()
    #: What the record says, or does not say, about a lifelong cause (resected length).
    cause_notes: tuple[str, ...] = ()
    #: What made the deficiency severe (R6: rules.yaml `severity`); None when it is not.
    severity_evidence: tuple[Evidence, ...] | None = None
    #: The latest usable results that are older than the profile's recency window (or undated):
    #: no rule reads them; the cards name them and ask for a repeat (protocol D9).
    stale: tuple[LabResult, ...] = ()

    @property
    def type(self) -> str | None:
        return self.type_rule.type if self.type_rule else None

    @property
    def flags(self) -> frozenset[str]:
        return frozenset(f.rule.id for f in self.findings)

    @property
    def severity(self) -> str:
        return SEVERE if self.severity_evidence is not None else "not-severe"

    @property
    def lifelong(self) -> bool:
        return bool(self.lifelong_causes)

    @property
    def unusable(self) -> tuple[LabResult, ...]:
        return self.facts.unusable_results

    @property
    def conflicting(self) -> tuple[LabResult, ...]:
        """Latest results that tie and disagree (protocol D10): named, never read."""
        return self.facts.conflicting_results

    @property
    def schedule_allowed(self) -> bool:
        """A regimen may be computed: confirmed, a treatable type, nothing contraindicating it."""
        return (
            self.status == CONFIRMED
            and self.type_rule is not None
            and self.type_rule.schedule
            and not any(f.rule.blocks_schedule for f in self.findings)
        )

    @property
    def new_course(self) -> bool:
        """A new treatment course is proposed (no current therapy to continue instead)."""
        return self.schedule_allowed and not any(f.rule.no_new_course for f in self.findings)

    @property
    def switch(self) -> Finding | None:
        """The finding whose card carries the new course because it replaces the current
        therapy (S2 intravenous, S11 oral not enough), if a new course is due at all."""
        if not self.new_course:
            return None
        return next((f for f in self.findings if f.rule.replaces), None)

    @property
    def rule_ids(self) -> tuple[str, ...]:
        ids = list(self.deficiency_rules)
        if self.type_rule:
            ids.append(self.type_rule.id)
        ids += [f.rule.id for f in self.findings]
        return tuple(ids)


class Assessor:
    """Holds the protocol and its code index so each assessment is only rule evaluation."""

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self.codes = code_index(protocol)

    def assess(self, facts: Facts, *, day: date, profile: str | None = None) -> Assessment:
        prof = self.protocol.profile(profile)
        profile_name = profile or self.protocol.profiles.default
        therapy = tuple(
            r
            for r in (*facts.medications, *facts.draft_medications)
            if self.codes.matches("b12_product", r.codings, r.words)
        )
        facts, stale = self._recent_only(
            self._current_conflicts(facts, day), day, prof.result_recency_days
        )
        scope = Scope(self.protocol, prof, facts, self.codes, day, b12_therapy=therapy)
        status, d_rules, d_evidence = self._deficiency(scope)
        if facts.unusable or stale:
            d_rules.append("D9")  # results were set aside: the cards name them
        if facts.conflicting:
            d_rules.append("D10")  # latest results disagree: none decides, a card names them
        scope.status = status
        scope.deficiency_rules = tuple(d_rules)
        for d_id, d_rule in self.protocol.rules.deficiency_rules.items():
            if d_rule.when is not None:
                ok, found = evaluate(d_rule.when, scope)
                if ok:
                    d_rules.append(d_id)
                    d_evidence += found
        scope.deficiency_rules = tuple(d_rules)

        type_rule: TypeRule | None = None
        causes: list[Cause] = []
        cause_evidence: list[Evidence] = []
        unconfirmed = self._unconfirmed_deficiency(facts)
        by_cause: dict[str, list[Evidence]] = {}
        if status == CONFIRMED:
            scope.conditions = "confirmed"
            for rule in self.protocol.rules.type_rules:
                for cause in rule.causes:
                    ok, found = evaluate(cause.when, scope)
                    if ok:
                        causes.append(cause)
                        cause_evidence += found
                        by_cause[cause.id] = found
                if causes:
                    type_rule = rule
                    break
            unconfirmed += self._unconfirmed_causes(scope, causes)
            scope.conditions = "all"

        lifelong, notes = self._lifelong(facts, causes, by_cause)
        scope.type = type_rule.type if type_rule else None
        scope.causes = frozenset(c.id for c in causes)
        findings = []
        # In table order, so a later rule may read an earlier one's `flag` (S7 reads S11).
        for s_rule in self.protocol.rules.safety_rules:
            ok, found = evaluate(s_rule.when, scope)
            if ok:
                seen = tuple(_unique(found))
                findings.append(Finding(s_rule, seen))
                scope.flags = scope.flags | {s_rule.id}
                scope.flag_evidence[s_rule.id] = seen

        severity: tuple[Evidence, ...] | None = None
        severity_rule = self.protocol.rules.severity
        if status == CONFIRMED and severity_rule is not None:
            ok, found = evaluate(severity_rule.severe_when, scope)
            severity = tuple(_unique(found)) if ok else None

        return Assessment(
            profile_name=profile_name,
            profile=prof,
            day=day,
            facts=facts,
            status=status,
            deficiency_rules=tuple(d_rules),
            deficiency_evidence=tuple(_unique(d_evidence)),
            type_rule=type_rule,
            causes=tuple(causes),
            cause_evidence=tuple(_unique(cause_evidence)),
            findings=tuple(findings),
            b12_therapy=therapy,
            unconfirmed_evidence=tuple(_unique(unconfirmed)),
            lifelong_causes=frozenset(lifelong),
            cause_notes=tuple(notes),
            severity_evidence=severity,
            stale=stale,
        )

    def _current_conflicts(self, facts: Facts, day: date) -> Facts:
        """The facts less conflicting results past their analyte's `applies_for_days`: like a
        single such result, they no longer describe the patient and are not a test to repeat."""
        analytes = self.protocol.observations.analytes

        def applies(result: LabResult) -> bool:
            days = analytes[result.analyte].applies_for_days
            return days is None or (
                result.when is not None and (day - result.when.date()).days <= days
            )

        kept = tuple(r for r in facts.conflicting if applies(r))
        return facts if len(kept) == len(facts.conflicting) else replace(facts, conflicting=kept)

    def _recent_only(
        self, facts: Facts, day: date, window_days: int
    ) -> tuple[Facts, tuple[LabResult, ...]]:
        """The facts less results older than the profile's window (protocol D9), and those.

        Only dates are read, so results no rule reads are still not validated; a stale result
        is read (and validated) because a card shows it. A result past its analyte's
        `applies_for_days` is dropped without being called stale: it is not a test to repeat
        but a finding that no longer holds (a year-old positive pregnancy test)."""
        analytes = self.protocol.observations.analytes
        results = facts.results
        when_of = getattr(results, "when", None)
        stale_names = []
        lapsed_names = []
        for name in results:
            analyte = analytes[name]
            when = when_of(name) if when_of is not None else results[name].when
            age = None if when is None else (day - when.date()).days
            if analyte.applies_for_days is not None and (
                age is None or age > analyte.applies_for_days
            ):
                lapsed_names.append(name)
            elif analyte.recent_only and (age is None or age > window_days):
                stale_names.append(name)
        if not stale_names and not lapsed_names:
            return facts, ()
        stale = tuple(results[name] for name in stale_names)
        dropped = stale_names + lapsed_names
        without = getattr(results, "without", None)
        recent = (
            without(dropped)
            if without is not None
            else {k: v for k, v in results.items() if k not in dropped}
        )
        return replace(facts, results=recent), stale

    def _lifelong(
        self, facts: Facts, causes: list[Cause], by_cause: dict[str, list[Evidence]]
    ) -> tuple[set[str], list[str]]:
        """Which causes need B12 for life; a length-dependent one says what length it saw."""
        lifelong: set[str] = set()
        notes: list[str] = []
        records = {r.reference: r for r in (*facts.procedures, *facts.conditions)}
        for cause in causes:
            limit = cause.lifelong_above_resected_cm
            if limit is None:
                if cause.lifelong:
                    lifelong.add(cause.id)
                continue
            cited = [
                records[e.reference] for e in by_cause.get(cause.id, ()) if e.reference in records
            ]
            known = [r.resected_cm for r in cited if r.resected_cm is not None]
            if not known:
                lifelong.add(cause.id)
                notes.append(
                    f"{cause.label}: resected length not recorded, so treated as lifelong "
                    f"(more than {limit:g} cm resected needs B12 for life)"
                )
            elif max(known) > limit:
                lifelong.add(cause.id)
                notes.append(
                    f"{cause.label} of {max(known):g} cm (more than {limit:g} cm): B12 for life"
                )
            else:
                notes.append(
                    f"{cause.label} of {max(known):g} cm ({limit:g} cm or less): not lifelong on "
                    "its own; maintenance is reviewed"
                )
        return lifelong, notes

    def _unconfirmed_deficiency(self, facts: Facts) -> list[Evidence]:
        return [
            Evidence(r.reference, f"{r.label} (recorded as unconfirmed)", r.date)
            for r in facts.conditions
            if r.unconfirmed and self.codes.matches("b12_deficiency", r.codings, r.words)
        ]

    def _unconfirmed_causes(self, scope: Scope, found: list[Cause]) -> list[Evidence]:
        """Causes that only an unconfirmed Condition would have given."""
        unconfirmed = {c.reference for c in scope.facts.conditions if c.unconfirmed}
        out: list[Evidence] = []
        if not unconfirmed:
            return out
        for rule in self.protocol.rules.type_rules:
            for cause in rule.causes:
                if cause in found:
                    continue
                scope.conditions = "confirmed"
                if evaluate(cause.when, scope)[0]:
                    continue
                scope.conditions = "unconfirmed"
                ok, evidence = evaluate(cause.when, scope)
                out += [
                    Evidence(e.reference, f"{e.text} (recorded as unconfirmed)", e.date)
                    for e in evidence
                    if ok and e.reference in unconfirmed
                ]
        return out

    def _deficiency(self, scope: Scope) -> tuple[str, list[str], list[Evidence]]:
        facts, thresholds = scope.facts, scope.profile.thresholds
        analytes = self.protocol.observations.analytes
        fired: list[str] = []
        evidence: list[Evidence] = []

        d1 = [
            Evidence(r.reference, r.label, r.date)
            for r in facts.confirmed_conditions
            if self.codes.matches("b12_deficiency", r.codings, r.words)
        ]
        if d1:
            fired.append("D1")
            evidence += d1

        def shown(result: LabResult) -> Evidence:
            spec = analytes[result.analyte]
            text = f"{spec.title} {display_value(result, spec)}"
            return Evidence(result.reference, text, result.date_text)

        b12 = facts.results.get("b12")
        lab_status: str | None = None
        if b12 is not None and b12.value is not None and b12.unit is not None:
            spec = analytes["b12"]

            def limit(name: str) -> float:
                value = threshold_value(thresholds[name], b12.unit or "", spec)
                if value is None:
                    raise ValueError(f"threshold {name} has no value in {b12.unit}")
                return value

            value = b12.value
            if value < limit("b12_deficient_below"):
                lab_status, rule = CONFIRMED, "D2"
            elif value <= limit("b12_normal_above"):
                follow_up = [
                    r
                    for r in (facts.results.get("mma"), facts.results.get("homocysteine"))
                    if r is not None and r.usable
                ]
                if follow_up:
                    raised = any(self._raised(r, scope) for r in follow_up)
                    lab_status, rule = (CONFIRMED if raised else NOT_DEFICIENT), "D3"
                    evidence += [shown(r) for r in follow_up]
                elif (active := self._active_b12(scope)) is not None:
                    lab_status, rule = active
                    evidence.append(shown(facts.results["holotc"]))
                else:
                    lab_status, rule = INDETERMINATE, "D4"
            elif value > limit("b12_very_high_above") and not scope.b12_therapy:
                lab_status, rule = NOT_DEFICIENT, "D7"
            else:
                lab_status, rule = NOT_DEFICIENT, "D5"
            # A recorded diagnosis outranks a later normal or borderline value (protocol D5);
            # lab rules that agree with it are still reported as evidence.
            if not d1 or lab_status == CONFIRMED:
                fired.append(rule)
                evidence.insert(len(d1), shown(b12))
            elif d1:
                evidence.append(shown(b12))

        if d1:
            return CONFIRMED, fired, evidence
        if lab_status is None:
            fired.append("D6")
            return UNKNOWN, fired, evidence
        return lab_status, fired, evidence

    def _active_b12(self, scope: Scope) -> tuple[str, str] | None:
        """Active B12 (holotranscobalamin) settles a borderline total B12 where the profile
        reads it (NICE NG239): low confirms, high argues against, in between decides nothing."""
        thresholds = scope.profile.thresholds
        if "holotc_deficient_below" not in thresholds:
            return None
        result = scope.facts.results.get("holotc")
        if result is None or result.value is None or result.unit is None:
            return None
        spec = self.protocol.observations.analytes["holotc"]
        low = threshold_value(thresholds["holotc_deficient_below"], result.unit, spec)
        high = threshold_value(thresholds.get("holotc_normal_above"), result.unit, spec)
        if low is not None and result.value < low:
            return CONFIRMED, "D3"
        if high is not None and result.value > high:
            return NOT_DEFICIENT, "D3"
        return None

    def _raised(self, result: LabResult, scope: Scope) -> bool:
        name = "mma_raised_above" if result.analyte == "mma" else "homocysteine_raised_above"
        spec = self.protocol.observations.analytes[result.analyte]
        limit = threshold_value(scope.profile.thresholds[name], result.unit or "", spec)
        return limit is not None and result.value is not None and result.value > limit


def _unique(items: list[Evidence]) -> list[Evidence]:
    seen: set[Evidence] = set()
    out = []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out
