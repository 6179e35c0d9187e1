"""The facts the rules read, extracted once from a patient's FHIR record.

Rules never look at FHIR JSON directly: they see these small immutable records, so the same
assessment runs on prefetch, fetched data, a CLI bundle or a $apply data Bundle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(frozen=True)
class CodedRecord:
    """A Condition, Procedure, medication, allergy or order reduced to what the rules match on."""

    reference: str
    codings: tuple[tuple[str, str], ...]
    words: str
    label: str
    date: str | None = None
    route_codings: tuple[tuple[str, str], ...] = ()
    route_words: str = ""
    status: str | None = None
    dose_ug: float | None = None
    timing: dict[str, object] | None = None
    has_prior_prescription: bool = False
    #: A Condition recorded as provisional, differential or unconfirmed (protocol D1 amended):
    #: it never confirms the deficiency or its type by itself.
    unconfirmed: bool = False
    #: The longest resected bowel length recorded for this Procedure / Condition, in cm.
    resected_cm: float | None = None


@dataclass(frozen=True)
class LabResult:
    """The latest result of one analyte; `value` is in `unit`, the unit it is compared in."""

    analyte: str
    reference: str
    when: datetime | None
    shown: str
    value: float | None = None
    unit: str | None = None
    positive: bool | None = None
    problem: str | None = None

    @property
    def usable(self) -> bool:
        return self.problem is None

    @property
    def date_text(self) -> str:
        return self.when.date().isoformat() if self.when else "undated"


@dataclass(frozen=True)
class Facts:
    patient_id: str | None
    birth_date: date | None
    conditions: tuple[CodedRecord, ...] = ()
    procedures: tuple[CodedRecord, ...] = ()
    medications: tuple[CodedRecord, ...] = ()
    allergies: tuple[CodedRecord, ...] = ()
    draft_medications: tuple[CodedRecord, ...] = ()
    draft_service_requests: tuple[CodedRecord, ...] = ()
    #: Draft orders the rules could not read: ("Type/id", why), named on a card as not checked.
    unreadable_drafts: tuple[tuple[str, str], ...] = ()
    #: The patient's medications (and draft medication orders) no table recognises that could
    #: still be B12 or folic acid: named by a code alone, by nothing, or by a Medication that is
    #: not in the record. ("Type/id", why), named on a card as not checked.
    unchecked_medications: tuple[tuple[str, str], ...] = ()
    #: The latest usable result per analyte (protocol D9). The extractor's mapping validates a
    #: result's resource the first time its value is looked up, so a rule that never reads an
    #: analyte never pays for (or fails on) it.
    results: Mapping[str, LabResult] = field(default_factory=dict)
    #: Results newer than the deciding one that cannot be used (no value, not a number, unknown
    #: unit, implausible, dated after today), newest first per analyte: named on the cards.
    unusable: tuple[LabResult, ...] = ()
    #: Usable results that tie for an analyte's latest and disagree (protocol D10): neither
    #: they nor any older result of that analyte decide, so it is missing from `results`.
    #: Lowest value first, so the answer does not depend on the order of the record.
    conflicting: tuple[LabResult, ...] = ()

    @property
    def confirmed_conditions(self) -> tuple[CodedRecord, ...]:
        return tuple(c for c in self.conditions if not c.unconfirmed)

    @property
    def patient_reference(self) -> str | None:
        return f"Patient/{self.patient_id}" if self.patient_id else None

    def age_on(self, day: date) -> int | None:
        if self.birth_date is None:
            return None
        b = self.birth_date
        return day.year - b.year - ((day.month, day.day) < (b.month, b.day))

    @property
    def unusable_analytes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.analyte for r in self.unusable))

    @property
    def unusable_results(self) -> tuple[LabResult, ...]:
        return self._validated(self.unusable)

    @property
    def conflicting_results(self) -> tuple[LabResult, ...]:
        return self._validated(self.conflicting)

    def _validated(self, shown: tuple[LabResult, ...]) -> tuple[LabResult, ...]:
        """Results no rule reads but a card shows: their resources are validated like any
        other result's, so invalid FHIR is refused rather than shown."""
        validate = getattr(self.results, "validate", None)
        if validate is not None:
            for r in shown:
                validate(r.reference)
        return shown


@dataclass(frozen=True)
class Evidence:
    """What a rule saw: the resource it came from, in words a clinician reads, with its date."""

    reference: str
    text: str
    date: str | None = None
