"""Typed view of the protocol tables.

The tables are the clinical contract; these models exist so that a malformed table fails at
start-up with a message naming the file and field, never halfway through a patient's request.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Indicator = Literal["info", "warning", "critical"]
DurationUnit = Literal["d", "wk", "mo"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class CodeEntry(Strict):
    system: str
    code: str
    display: str | None = None
    source: str
    match: Literal["exact", "prefix"] = "exact"


class ValueSet(Strict):
    title: str
    codes: tuple[CodeEntry, ...] = ()
    text: tuple[str, ...] = ()
    #: Qualifies records another value set already picked (a route or form of B12 therapy);
    #: its words ("tablet", "injection") never make an unrelated resource worth reading.
    qualifier: bool = False


class CodesTable(Strict):
    version: str
    systems: dict[str, str]
    value_sets: dict[str, ValueSet]


class UnitRule(Strict):
    compare_as: str
    factor: float


class Analyte(Strict):
    title: str
    codes: tuple[CodeEntry, ...]
    qualitative: bool = False
    display_unit: str | None = None
    units: dict[str, UnitRule] = Field(default_factory=dict)
    #: Per comparison unit: a value at or above this is not plausible (protocol D9).
    plausible_below: dict[str, float] = Field(default_factory=dict)
    #: Whether only results within the profile's recency window decide (protocol D9).
    recent_only: bool = True
    #: A result older than this many days (or undated) no longer describes the patient now and
    #: is not read at all: not a stale result to repeat, just no longer true (S9: a positive
    #: pregnancy test speaks for about the length of a pregnancy).
    applies_for_days: int | None = Field(default=None, ge=1)
    conversions: dict[str, dict[str, float]] = Field(default_factory=dict)
    #: Two results that tie for the latest (protocol D10) agree when, in `display_unit`, they
    #: differ by less than this after a conversion between unit families: a converted value
    #: carries the rounding of the factor. Without a conversion they agree only when equal.
    same_value_within: float = Field(default=0.0, ge=0)


class QualitativeReading(Strict):
    positive_interpretations: tuple[str, ...]
    negative_interpretations: tuple[str, ...]
    positive_words: tuple[str, ...]
    negative_words: tuple[str, ...]


class ObservationsTable(Strict):
    version: str
    analytes: dict[str, Analyte]
    qualitative: QualitativeReading


class CardText(Strict):
    summary: str = Field(max_length=139)
    detail: str


class DeficiencyRule(Strict):
    title: str
    citations: tuple[str, ...]
    card: CardText | None = None
    #: For a D-rule that flags rather than decides the status (D8): when it fires, evaluated
    #: once the status is known.
    when: dict[str, Any] | None = None


class Cause(Strict):
    id: str
    label: str
    when: dict[str, Any]
    lifelong: bool = False
    #: Lifelong only when more than this length was resected, or when no length is recorded.
    lifelong_above_resected_cm: float | None = None
    reason_value_set: str | None = None


class TypeRule(Strict):
    id: str
    type: str
    label: str
    causes: tuple[Cause, ...]
    schedule: bool = True
    reason_codes: tuple[CodeEntry, ...] = ()
    #: Said on a maintenance phase that ends at review (M5: lifelong if the cause turns out to
    #: be pernicious anaemia).
    review_note: str | None = None
    #: The review note as the treatment card says it: one short line.
    review_card_note: str | None = None


class SafetyRule(Strict):
    id: str
    title: str
    when: dict[str, Any]
    indicator: Indicator
    summary: str = Field(max_length=139)
    detail: str
    citations: tuple[str, ...]
    route: str | None = None
    blocks_schedule: bool = False
    no_new_course: bool = False
    #: A value set of B12 orders this rule replaces: its card carries the protocol's IM series
    #: (in place of the treatment card) and, on order hooks, deletes the matching drafts.
    replaces: str | None = None
    monitoring: tuple[str, ...] = ()


class MonitoringRule(Strict):
    id: str
    name: str
    text: str
    test: CodeEntry
    offset_days: int
    citations: tuple[str, ...]
    #: An S-rule id (with that finding) or a T-rule id (with that type, e.g. M5 with T6).
    only_with: str | None = None
    #: The profiles whose sources ask for this test; empty: every profile.
    profiles: tuple[str, ...] = ()


class SeverityRule(Strict):
    """When the deficiency is severe (R6): then IM is recommended whatever the type."""

    severe_when: dict[str, Any]
    citations: tuple[str, ...]


class ResectedLength(Strict):
    """How a resected bowel length is read from text and quantities (T3 amended)."""

    units: dict[str, float]
    resected_words: tuple[str, ...]
    ambiguous_words: tuple[str, ...]


class DraftOrderRule(Strict):
    """A check of the draft orders being signed that is not a safety rule (R8)."""

    title: str
    indicator: Indicator
    summary: str = Field(max_length=139)
    detail: str
    citations: tuple[str, ...]


class RulesTable(Strict):
    version: str
    deficiency_rules: dict[str, DeficiencyRule]
    type_rules: tuple[TypeRule, ...]
    default_deficiency_code: CodeEntry
    safety_rules: tuple[SafetyRule, ...]
    monitoring_rules: tuple[MonitoringRule, ...]
    maintenance_note: str
    unconfirmed_verification_statuses: tuple[str, ...] = ()
    severity: SeverityRule | None = None
    resected_length: ResectedLength | None = None
    unconfirmed_diagnosis: CardText | None = None
    #: The card naming medications that could be B12 or folic acid but could not be read.
    medications_not_checked: CardText | None = None
    #: The treatment card's line when the Patient has no birth date, so S8 could not be checked.
    age_not_recorded: str | None = None
    draft_order_rules: dict[str, DraftOrderRule] = Field(default_factory=dict)


class Medication(Strict):
    name: str
    form: str
    coding: CodeEntry | None


class Route(Strict):
    coding: CodeEntry
    text: str
    #: How a card summary names the route ("IM"); the route id where absent.
    short: str | None = None


class Timing(Strict):
    frequency: int = Field(ge=1)
    period: float = Field(gt=0)
    period_max: float | None = None
    period_unit: DurationUnit
    count: int | None = Field(default=None, ge=1)


class Duration(Strict):
    value: int = Field(ge=1)
    unit: DurationUnit


class Phase(Strict):
    id: str
    title: str
    medication: str
    dose_ug: float = Field(gt=0)
    route: str
    timing: Timing
    course: Literal["acute", "continuous"]
    duration: Duration | None = None
    maintenance: bool = False
    condition: str | None = None
    #: The condition in a few words, as a schedule line on a card says it.
    condition_label: str | None = None


class Regimen(Strict):
    title: str
    citations: tuple[str, ...]
    phases: tuple[Phase, ...] = Field(min_length=1)


class RegimensTable(Strict):
    version: str
    medications: dict[str, Medication]
    routes: dict[str, Route]
    regimens: dict[str, Regimen]


class Alternative(Strict):
    rule: str
    regimen: str


class RegimenRule(Strict):
    id: str
    when: dict[str, Any]
    recommended: str
    alternatives: tuple[Alternative, ...] = ()


class OptionRule(Strict):
    """Options offered beside whatever a regimen rule decided (R7), never in its place.

    `beside` maps a regimen the plan offers to the option offered next to it; the option goes
    beside the first offered schedule (recommended, then alternatives in order) it names.
    """

    id: str
    when: dict[str, Any]
    beside: dict[str, str] = Field(min_length=1)


class Profile(Strict):
    version: str
    title: str
    citations: tuple[str, ...]
    thresholds: dict[str, Any]
    maintenance_review: Duration
    result_recency_days: int = Field(default=365, ge=1)
    regimen_rules: tuple[RegimenRule, ...]
    option_rules: tuple[OptionRule, ...] = ()


class ProfilesTable(Strict):
    version: str
    default: str
    profiles: dict[str, Profile]


class Source(Strict):
    title: str
    #: The short name a card link shows; the citation key where absent.
    label: str | None = None
    url: str | None = None


class SourcesTable(Strict):
    version: str
    sources: dict[str, Source]
