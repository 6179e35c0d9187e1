"""FHIR R4 resources in, Facts out.

Only resources a rule could read are validated (strict R4, cds_service.fhir.validation): they are
picked on the raw JSON first by type, status and code, because validating a whole record costs
far more than the rules themselves. The latest result of each analyte is validated when a rule
(or a card) first reads it: MMA and homocysteine, for one, are read only when the B12 level is
borderline. Status filtering follows protocol section 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

from cds_service.clinical.codes import code_index
from cds_service.clinical.draft_fields import unreadable_field
from cds_service.clinical.facts import CodedRecord, Facts, LabResult
from cds_service.clinical.lengths import length_in_text, length_quantity, longest
from cds_service.clinical.raw import OBJECT
from cds_service.clinical.references import resolve
from cds_service.clinical.units import (
    disagree,
    display_number,
    read_qualitative,
    read_quantity,
    value_key,
)
from cds_service.fhir.validation import resource_validator
from cds_service.protocol import Protocol

Resource = Mapping[str, Any]

CONDITION_ACTIVE = {"active", "recurrence", "relapse"}
NOT_TRUE = {"refuted", "entered-in-error"}
OBSERVATION_STATUSES = {"final", "amended", "corrected", "preliminary"}
MEDICATION_ACTIVE = {"active", "on-hold"}
ALLERGY_ACTIVE = {"active"}


class InvalidResourceError(ValueError):
    """A resource the rules need is not valid FHIR R4; the message names it but holds no PHI.

    ``reference`` ("Type/id") lets the caller tell whose fault it is: a client that sent it
    (400) or a FHIR server it was fetched from (412)."""

    def __init__(self, message: str, reference: str) -> None:
        super().__init__(message)
        self.reference = reference


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _list(value: Any) -> list[Any]:
    """A FHIR array, or nothing: records arrive before validation, so shapes are not trusted."""
    return value if isinstance(value, list) else []


def _codings(concept: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(concept, OBJECT):
        return ()
    out = []
    for c in _list(concept.get("coding")):
        if isinstance(c, OBJECT) and c.get("code"):
            out.append((str(c.get("system") or ""), str(c["code"])))
    return tuple(out)


#: "Vitamin B₁₂" as EHR text often writes it reads as "vitamin b12".
_SUBSCRIPT_DIGITS = str.maketrans("₀₁₂₃₄₅₆₇₈₉", "0123456789")


def _words(*concepts: Any) -> str:
    parts: list[str] = []
    for concept in concepts:
        if isinstance(concept, OBJECT):
            if concept.get("text"):
                parts.append(str(concept["text"]))
            for c in _list(concept.get("coding")):
                if isinstance(c, OBJECT) and c.get("display"):
                    parts.append(str(c["display"]))
        elif isinstance(concept, str):
            parts.append(concept)
    return " ".join(parts).lower().translate(_SUBSCRIPT_DIGITS)


def _label(concept: Any) -> str:
    if isinstance(concept, OBJECT):
        if concept.get("text"):
            return str(concept["text"])
        for c in _list(concept.get("coding")):
            if isinstance(c, OBJECT) and (c.get("display") or c.get("code")):
                return str(c.get("display") or c.get("code"))
    return "unnamed"


def _status_code(concept: Any) -> str | None:
    codes = [code for _, code in _codings(concept)]
    return codes[0] if codes else None


def resource_reference(resource: Resource) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id', 'unidentified')}"


#: The resource types the extractor may validate (each `_validate` call below reads one of them).
VALIDATED_TYPES = (
    "Patient",
    "Condition",
    "Observation",
    "Procedure",
    "MedicationRequest",
    "MedicationStatement",
    "AllergyIntolerance",
    "ServiceRequest",
    "Medication",
)


def _validate(resource: Resource) -> None:
    paths = resource_validator().problems(resource)
    if paths:
        reference = resource_reference(resource)
        where = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
        raise InvalidResourceError(f"{reference} is not valid FHIR R4 at {where}", reference)


class CheckedResults(Mapping[str, LabResult]):
    """The latest usable result per analyte; a result's resource is validated on first lookup.

    Lookups (`[]`, `get`, `in`, `values`) validate; iterating over the analyte names, `when`
    and `without` do not, since a name or a date says only that a result exists. An invalid
    resource raises InvalidResourceError from the lookup, so its value never reaches a rule.
    `validate` checks a set-aside result (unusable or stale) that a card is about to show."""

    def __init__(
        self,
        latest: Mapping[str, tuple[LabResult, Resource]],
        set_aside: Mapping[str, Resource] | None = None,
    ) -> None:
        self._latest = dict(latest)
        self._set_aside = dict(set_aside or {})
        self._checked: set[str] = set()

    def __getitem__(self, analyte: str) -> LabResult:
        result, resource = self._latest[analyte]
        if analyte not in self._checked:
            _validate(resource)
            self._checked.add(analyte)
        return result

    def __iter__(self) -> Iterator[str]:
        return iter(self._latest)

    def __len__(self) -> int:
        return len(self._latest)

    def when(self, analyte: str) -> datetime | None:
        return self._latest[analyte][0].when

    def without(self, analytes: Iterable[str]) -> CheckedResults:
        """The same results less some analytes (stale ones, which no rule may read)."""
        dropped = set(analytes)
        out = CheckedResults(
            {k: v for k, v in self._latest.items() if k not in dropped},
            {**self._set_aside, **{v[0].reference: v[1] for k, v in self._latest.items()}},
        )
        out._checked = self._checked - dropped
        return out

    def validate(self, reference: str) -> None:
        resource = self._set_aside.get(reference)
        if resource is None:
            resource = next(
                (r for res, r in self._latest.values() if res.reference == reference), None
            )
        if resource is not None:
            _validate(resource)


#: Where an undated result sorts among dated ones: before all of them.
_UNDATED = datetime.min.replace(tzinfo=UTC)


def _parse_when(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    # The dates of one record repeat (a draw gives several results the same time), and the
    # same resource is read by `relevant` and `extract`: each text is parsed once.
    return _parse_text(value) if len(value) <= 40 else _parse_text.__wrapped__(value)


@lru_cache(maxsize=8192)
def _parse_text(value: str) -> datetime | None:
    text = value.replace("Z", "+00:00")
    try:
        if len(text) <= 10:
            parts = [int(p) for p in text.split("-")] + [1, 1]
            return datetime(parts[0], parts[1], parts[2], tzinfo=UTC)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _times(resource: Resource) -> tuple[Any, ...]:
    """Where a result's time is read from, first readable one first."""
    period = resource.get("effectivePeriod")
    return (
        resource.get("effectiveDateTime"),
        resource.get("effectiveInstant"),
        period.get("start") if isinstance(period, OBJECT) else None,
        resource.get("issued"),
    )


def _effective(resource: Resource) -> datetime | None:
    for value in _times(resource):
        parsed = _parse_when(value)
        if parsed is not None:
            return parsed
    return None


def _date_only(resource: Resource) -> bool:
    """Whether the time `_effective` reads is a date with no time of day: such a result could
    have been taken at any hour of that day (protocol D10)."""
    for value in _times(resource):
        if isinstance(value, str) and _parse_when(value) is not None:
            return len(value) <= 10
    return False


def _tied(
    when: datetime | None, res: Resource, other: datetime | None, other_res: Resource
) -> bool:
    """Two results tie for the latest when neither is known to be later (protocol D10): the
    same instant, or the same day when either gives only a date."""
    if when is None or other is None:
        return False
    if when == other:
        return True
    return when.date() == other.date() and (_date_only(res) or _date_only(other_res))


#: (type, id) -> resource: the Medications of a record, for `medicationReference`.
Found = Mapping[tuple[str, str], Resource]


@dataclass(frozen=True)
class _Product:
    """What a medication resource says it gives: its concepts, or why that cannot be read."""

    concepts: tuple[Any, ...] = ()
    #: A Medication's form ("Oral Tablet"): read for the route, never as the product's name.
    form: Any = None
    #: A referenced Medication that is not contained (validated on its own), if any.
    medication: Resource | None = None
    problem: str | None = None

    @property
    def codings(self) -> tuple[tuple[str, str], ...]:
        return tuple(c for concept in self.concepts for c in _codings(concept))

    @property
    def label(self) -> str:
        """A name a clinician reads: the first concept with text or a display (a Medication's
        code may be a bare RxNorm code while its ingredient is named), else its code."""
        for concept in self.concepts:
            if _words(concept).strip():
                return _label(concept)
        return _label(self.concepts[0]) if self.concepts else "unnamed"

    @property
    def name_words(self) -> str:
        return _words(*self.concepts)

    @property
    def words(self) -> str:
        return _words(*self.concepts, self.form)


def _product(
    res: Resource,
    found: Found,
    *,
    base_url: str | None = None,
    full_urls: Mapping[str, Resource] | None = None,
) -> _Product:
    """The product of a MedicationRequest / MedicationStatement: `medicationCodeableConcept`,
    or the Medication its `medicationReference` names (contained `#id`, a Bundle entry, or a
    Medication of the record) read by its code, its ingredients and its form."""
    concept = res.get("medicationCodeableConcept")
    reference = res.get("medicationReference")
    if concept is not None or reference is None:
        return _Product((concept or {},))
    med = resolve(res, reference, found, base_url=base_url, full_urls=full_urls)
    named = reference.get("reference") if isinstance(reference, OBJECT) else None
    if not isinstance(med, OBJECT) or med.get("resourceType") != "Medication":
        shown = named[:80] if isinstance(named, str) else "with no reference"
        return _Product(problem=f"medication {shown} is not in the record")
    ingredients = [
        i.get("itemCodeableConcept") for i in _list(med.get("ingredient")) if isinstance(i, OBJECT)
    ]
    contained = isinstance(named, str) and named.startswith("#")
    return _Product(
        (med.get("code") or {}, *ingredients),
        form=med.get("form"),
        medication=None if contained else med,
    )


def _code_only(product: _Product) -> str | None:
    """Why a product no table recognises could still be B12 or folic acid: it is named by a
    code alone (no display, no text) or by nothing, so its words could not be read either."""
    if product.problem:
        return product.problem
    if product.name_words.strip():
        return None
    codes = [f"{system or '(no system)'}|{code}" for system, code in product.codings]
    if not codes:
        return "no medication code or name"
    shown = ", ".join(codes[:2]) + (f" and {len(codes) - 2} more" if len(codes) > 2 else "")
    return f"unrecognised code {shown}"[:160]


def _dose_and_timing(resource: Resource) -> tuple[float | None, dict[str, object] | None, Any]:
    dosages = _list(resource.get("dosageInstruction")) or _list(resource.get("dosage"))
    if not dosages or not isinstance(dosages[0], OBJECT):
        return None, None, None
    first = dosages[0]
    dose = None
    for dr in _list(first.get("doseAndRate")):
        q = dr.get("doseQuantity") if isinstance(dr, OBJECT) else None
        if isinstance(q, OBJECT) and q.get("value") is not None:
            unit = str(q.get("code") or q.get("unit") or "").lower()
            factor = {"ug": 1.0, "mcg": 1.0, "mg": 1000.0}.get(unit)
            if factor is not None and isinstance(q["value"], (int, float)):
                dose = float(q["value"]) * factor
    timing = (
        first.get("timing", {}).get("repeat") if isinstance(first.get("timing"), OBJECT) else None
    )
    route = first.get("route")
    if route is None and isinstance(first.get("text"), str):
        # No coded route: the sig ("1000 mcg IV once") is where the prescriber wrote it.
        route = first["text"]
    return dose, (dict(timing) if isinstance(timing, OBJECT) else None), route


def _ended_before(res: Resource, today: date | None) -> bool:
    """A statement still `active` whose effective period ended before today: records are often
    not closed when a course ends, and an ended course is not current therapy (S7 would
    otherwise withhold a new course from a patient who is no longer treated)."""
    if res.get("resourceType") != "MedicationStatement":
        return False
    period = res.get("effectivePeriod")
    end = period.get("end") if isinstance(period, OBJECT) else None
    return today is not None and isinstance(end, str) and end[:10] < today.isoformat()


def _therapy_start(res: Resource) -> str | None:
    """When a medication began: the statement's effective start, else when it was written."""
    period = res.get("effectivePeriod")
    for value in (
        res.get("effectiveDateTime"),
        period.get("start") if isinstance(period, OBJECT) else None,
        res.get("authoredOn"),
        res.get("dateAsserted"),
    ):
        if isinstance(value, str) and value:
            return value[:10]
    return None


class FactExtractor:
    """Builds Facts; holds the code indexes so they are built once per protocol, not per call."""

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self.codes = code_index(protocol)
        self._analyte_by_code = {
            (protocol.system_url(entry.system), entry.code): name
            for name, analyte in protocol.observations.analytes.items()
            for entry in analyte.codes
        }
        # Compiled now, so the first call does not pay for it and it is loaded before
        # start-up ends (cds_service.heap).
        resource_validator()

    def extract(
        self,
        resources: Iterable[Resource],
        *,
        patient_id: str | None = None,
        draft_orders: Iterable[Resource] = (),
        today: date | None = None,
        base_url: str | None = None,
        full_urls: Mapping[str, Resource] | None = None,
    ) -> Facts:
        """`today` (the day of the answer) makes results dated after it unusable. `base_url`
        (the FHIR server of the record) and `full_urls` (Bundle `fullUrl` -> resource) resolve
        a `medicationReference` that is neither contained nor a relative `Medication/id`."""
        resources = [r for r in resources if isinstance(r, OBJECT)]
        draft_orders = [r for r in draft_orders if isinstance(r, OBJECT)]
        by_id: dict[tuple[str, str], Resource] = {
            ("Medication", r["id"]): r
            for r in (*resources, *draft_orders)
            if r.get("resourceType") == "Medication" and isinstance(r.get("id"), str)
        }

        def product(res: Resource) -> _Product:
            return _product(res, by_id, base_url=base_url, full_urls=full_urls)

        #: Medications that could be B12 or folic acid but could not be read: (Type/id, why).
        unchecked: list[tuple[str, str]] = []

        def medication(res: Resource, *, validate: bool = True) -> CodedRecord | None:
            made = product(res)
            record = self._medication(res, made, validate=validate)
            if record is None:
                why = _code_only(made)
                if why is not None:
                    unchecked.append((resource_reference(res)[:80], why))
            return record

        patient: Resource | None = None
        conditions: list[CodedRecord] = []
        procedures: list[CodedRecord] = []
        medications: list[CodedRecord] = []
        allergies: list[CodedRecord] = []
        drafts: list[CodedRecord] = []
        draft_tests: list[CodedRecord] = []
        history: dict[str, list[tuple[datetime | None, Resource]]] = {}
        #: Procedure reference -> resected length (cm) from Observations that are part of it.
        lengths: dict[str, float] = {}

        def keep_latest(analyte: str, res: Resource) -> None:
            history.setdefault(analyte, []).append((_effective(res), res))

        for res in resources:
            if not isinstance(res, OBJECT):
                continue
            kind = res.get("resourceType")
            if kind == "Patient":
                if patient is None and (patient_id is None or res.get("id") == patient_id):
                    _validate(res)
                    patient = res
            elif kind == "Condition":
                record = self._condition(res)
                if record:
                    conditions.append(record)
            elif kind == "Observation":
                if _str(res.get("status")) not in OBSERVATION_STATUSES:
                    continue
                self._length_of_procedure(res, lengths)
                analyte = self._analyte_of(res)
                if analyte:
                    keep_latest(analyte, res)
            elif kind == "Procedure":
                if self._procedure_counts(res):
                    _validate(res)
                    record = self._coded(res, res.get("code"), res.get("performedDateTime"))
                    procedures.append(replace(record, resected_cm=self._length_in(res)))
            elif kind in ("MedicationRequest", "MedicationStatement"):
                status = _str(res.get("status"))
                if kind == "MedicationRequest" and status == "draft":
                    record = medication(res)
                    if record:
                        drafts.append(record)
                elif status in MEDICATION_ACTIVE and not _ended_before(res, today):
                    record = medication(res)
                    if record:
                        medications.append(record)
            elif kind == "AllergyIntolerance":
                record = self._allergy(res)
                if record:
                    allergies.append(record)
            elif kind == "ServiceRequest" and self._draft_test(res):
                record = self._service_request(res)
                if record:
                    draft_tests.append(record)

        unreadable: list[tuple[str, str]] = []
        for res in draft_orders:
            if not isinstance(res, OBJECT):
                continue
            kind = res.get("resourceType")
            if kind not in ("MedicationRequest", "ServiceRequest"):
                continue
            # Drafts are read leniently (EHRs send invalid ones): the fields the rules read are
            # type-checked instead of validating the whole resource.
            problem = unreadable_field(res)
            if problem is not None:
                if self._not_needed(res, product(res)):
                    continue
                unreadable.append((resource_reference(res)[:80], problem))
            elif kind == "MedicationRequest":
                record = medication(res, validate=False)
                if record:
                    drafts.append(record)
            else:
                record = self._service_request(res, validate=False)
                if record:
                    draft_tests.append(record)

        if lengths:
            procedures = [
                replace(p, resected_cm=longest(p.resected_cm, lengths.get(p.reference)))
                for p in procedures
            ]
        # The latest *usable* result per analyte decides (protocol D9); newer unusable ones are
        # set aside and named. Latest results that tie and disagree decide nothing (D10). Only
        # the deciding result is validated when a rule reads it: a two-year history would
        # otherwise cost more to validate than the assessment.
        read: dict[str, tuple[LabResult, Resource]] = {}
        unusable: list[LabResult] = []
        conflicting: list[LabResult] = []
        set_aside: dict[str, Resource] = {}
        for name, found in history.items():
            found.sort(key=lambda item: item[0] or _UNDATED, reverse=True)
            for position, (when, res) in enumerate(found):
                result = self._result(name, res, when, today)
                if result.usable:
                    ties = self._ties(name, found[position:], result, today)
                    disagreeing = self._conflicting(name, ties)
                    if not disagreeing:
                        read[name] = (result, res)
                    else:
                        conflicting += disagreeing
                        set_aside.update((r.reference, found[position + i][1]) for i, r in ties)
                    break
                unusable.append(result)
                set_aside[result.reference] = res
        birth = _parse_when(patient.get("birthDate")) if patient else None
        return Facts(
            patient_id=str(patient["id"]) if patient and patient.get("id") else patient_id,
            birth_date=birth.date() if birth else None,
            conditions=tuple(conditions),
            procedures=tuple(procedures),
            medications=tuple(medications),
            allergies=tuple(allergies),
            draft_medications=tuple(drafts),
            draft_service_requests=tuple(draft_tests),
            unreadable_drafts=tuple(unreadable),
            unchecked_medications=tuple(unchecked),
            results=CheckedResults(read, set_aside),
            unusable=tuple(unusable),
            conflicting=tuple(conflicting),
        )

    def relevant(
        self, resources: Iterable[Resource], *, today: date | None = None
    ) -> list[Resource]:
        """The resources `extract` can read, in their order: the rest cannot change the Facts.

        `extract(relevant(r, today=d), today=d)` gives the same Facts as `extract(r, today=d)`
        (a test holds them to it). Of each analyte's results it keeps the newest ones down to
        the first usable result, the one that decides, with the results that tie with it
        (protocol D10) and the analyte's first in the record, which fixes its place; older
        results are never read. A large record is cut down to this before it is handed on, so
        the work that stays on the event loop is proportional to what the rules read, not to
        the size of the record.
        """
        keep: list[Resource] = []
        results: dict[str, list[tuple[datetime | None, int]]] = {}
        for res in resources:
            if not isinstance(res, OBJECT):
                continue
            kind = res.get("resourceType")
            if kind == "Observation":
                if _str(res.get("status")) not in OBSERVATION_STATUSES:
                    continue
                analyte = self._analyte_of(res)
                if analyte:
                    results.setdefault(analyte, []).append((_effective(res), len(keep)))
                elif self._procedure_parts(res) is None:
                    continue
            elif not self._counts(res):
                continue
            keep.append(res)
        dropped: set[int] = set()
        for analyte, found in results.items():
            # The first result of each analyte stays wherever it is: `extract` groups results
            # in the order analytes first appear, which orders the unusable ones it names.
            first = found[0][1]
            found.sort(key=lambda item: item[0] or _UNDATED, reverse=True)
            for position, (when, index) in enumerate(found):
                res = keep[index]
                try:
                    usable = self._result(analyte, res, when, today).usable
                except Exception:  # noqa: BLE001 - extract meets the same error on it
                    usable = False
                if usable:
                    tied = self._kept_ties(
                        analyte, [(w, keep[i]) for w, i in found[position:]], today
                    )
                    dropped.update(
                        i
                        for offset, (_, i) in enumerate(found[position:])
                        if offset > 0
                        and offset not in tied
                        and i != first
                        and self._procedure_parts(keep[i]) is None
                    )
                    break
        return [res for i, res in enumerate(keep) if i not in dropped]

    def _kept_ties(
        self, analyte: str, found: list[tuple[datetime | None, Resource]], today: date | None
    ) -> set[int]:
        """The indices into `found` (newest first from the deciding result) that `extract`
        reads as ties (protocol D10); every tied one when reading them fails, since `extract`
        then meets the same error."""
        when, res = found[0]
        try:
            latest = self._result(analyte, res, when, today)
            return {index for index, _ in self._ties(analyte, found, latest, today)}
        except Exception:  # noqa: BLE001 - extract meets the same error on it
            return {i for i, (other, r) in enumerate(found) if _tied(when, res, other, r)}

    def _counts(self, res: Resource) -> bool:
        """Whether `extract` reads this resource (Observations aside: see `relevant`)."""
        kind = res.get("resourceType")
        if kind in ("Patient", "Medication"):
            return True
        if kind == "Condition":
            return self._condition_counts(res)
        if kind == "Procedure":
            return self._procedure_counts(res)
        if kind in ("MedicationRequest", "MedicationStatement"):
            return self._medication_counts(res)
        if kind == "AllergyIntolerance":
            return self._allergy_substances(res) is not None
        if kind == "ServiceRequest":
            return self._draft_test(res)
        return False

    def _coded(self, res: Resource, concept: Any, when: Any = None) -> CodedRecord:
        return CodedRecord(
            reference=resource_reference(res),
            codings=_codings(concept),
            words=_words(concept),
            label=_label(concept),
            date=str(when)[:10] if when else None,
            status=_str(res.get("status")),
        )

    def _condition_counts(self, res: Resource) -> bool:
        if _status_code(res.get("clinicalStatus")) not in CONDITION_ACTIVE:
            return False
        if _status_code(res.get("verificationStatus")) in NOT_TRUE:
            return False
        # Text counts too: exposures such as nitrous oxide use often have no verified code.
        return self.codes.known(_codings(res.get("code")), _words(res.get("code")))

    def _procedure_counts(self, res: Resource) -> bool:
        # Text counts too: CPT and ICD-10-PCS procedure codes are not listed, and surgical
        # histories are often text only ("Total gastrectomy 2019").
        code = res.get("code")
        return _str(res.get("status")) == "completed" and self.codes.known(
            _codings(code), _words(code)
        )

    def _medication_counts(self, res: Resource) -> bool:
        """A draft MedicationRequest or an active medication, whatever its drug: one the tables
        do not know may still be named as not checked, and its drug may be a Medication."""
        status = _str(res.get("status"))
        return (
            res.get("resourceType") == "MedicationRequest" and status == "draft"
        ) or status in MEDICATION_ACTIVE

    def _draft_test(self, res: Resource) -> bool:
        return _str(res.get("status")) == "draft" and self.codes.known(_codings(res.get("code")))

    def _condition(self, res: Resource) -> CodedRecord | None:
        if not self._condition_counts(res):
            return None
        _validate(res)
        when = res.get("onsetDateTime") or res.get("recordedDate")
        record = replace(self._coded(res, res.get("code"), when), resected_cm=self._length_in(res))
        verification = _status_code(res.get("verificationStatus"))
        if verification in self.protocol.rules.unconfirmed_verification_statuses:
            record = replace(record, unconfirmed=True)
        return record

    def _length_in(self, res: Resource) -> float | None:
        """A resected length from bodySite words (the site removed) or a note that says so."""
        spec = self.protocol.rules.resected_length
        if spec is None:
            return None
        sites = [
            length_in_text(_words(site), spec, needs_resected_word=False)
            for site in _list(res.get("bodySite"))
        ]
        notes = [
            length_in_text(str(n.get("text")), spec, needs_resected_word=True)
            for n in _list(res.get("note"))
            if isinstance(n, OBJECT) and isinstance(n.get("text"), str)
        ]
        return longest(*sites, *notes)

    def _procedure_parts(self, res: Resource) -> tuple[float, list[str]] | None:
        """A resected length this Observation gives and the Procedures it is part of."""
        spec = self.protocol.rules.resected_length
        # Nearly every Observation is part of no Procedure: its quantity is not read at all.
        if spec is None or not res.get("partOf"):
            return None
        cm = length_quantity(res.get("valueQuantity"), spec)
        if cm is None:
            return None
        procedures = []
        for part in _list(res.get("partOf")):
            ref = part.get("reference") if isinstance(part, OBJECT) else None
            if isinstance(ref, str) and "Procedure/" in ref:
                procedures.append("Procedure/" + ref.rsplit("Procedure/", 1)[1])
        return (cm, procedures) if procedures else None

    def _length_of_procedure(self, res: Resource, lengths: dict[str, float]) -> None:
        parts = self._procedure_parts(res)
        if parts is None:
            return
        cm, procedures = parts
        _validate(res)
        for key in procedures:
            lengths[key] = longest(lengths.get(key), cm) or cm

    def _allergy_substances(self, res: Resource) -> tuple[tuple[tuple[str, str], ...], str] | None:
        """The codings and words of an active allergy to a substance the rules know."""
        if _status_code(res.get("clinicalStatus")) not in ALLERGY_ACTIVE:
            return None
        if _status_code(res.get("verificationStatus")) in NOT_TRUE:
            return None
        substances = [res.get("code")] + [
            r.get("substance") for r in _list(res.get("reaction")) if isinstance(r, OBJECT)
        ]
        codings = tuple(c for s in substances for c in _codings(s))
        words = _words(*substances)
        if not self.codes.known(codings, words):
            return None
        return codings, words

    def _allergy(self, res: Resource) -> CodedRecord | None:
        substances = self._allergy_substances(res)
        if substances is None:
            return None
        codings, words = substances
        _validate(res)
        return CodedRecord(
            reference=resource_reference(res),
            codings=codings,
            words=words,
            label=_label(res.get("code")),
            date=str(res.get("recordedDate"))[:10] if res.get("recordedDate") else None,
        )

    def _not_needed(self, res: Resource, made: _Product) -> bool:
        """Whether a draft's code is readable and names nothing the rules look for."""
        if res["resourceType"] == "MedicationRequest" and "medicationCodeableConcept" not in res:
            return not self.codes.known(made.codings, made.words) and _code_only(made) is None
        field = (
            "medicationCodeableConcept" if res["resourceType"] == "MedicationRequest" else "code"
        )
        concept = res.get(field)
        if concept is not None and unreadable_field(
            {"resourceType": res["resourceType"], field: concept}
        ):
            return False
        return not self.codes.known(_codings(concept), _words(concept))

    def _medication(
        self, res: Resource, made: _Product, *, validate: bool = True
    ) -> CodedRecord | None:
        codings, words = made.codings, made.words
        if not self.codes.known(codings, words):
            return None
        if validate:
            _validate(res)
            if made.medication is not None:
                _validate(made.medication)
        dose, timing, route = _dose_and_timing(res)
        return CodedRecord(
            reference=resource_reference(res),
            codings=codings,
            words=words,
            label=made.label,
            date=_therapy_start(res),
            route_codings=_codings(route),
            route_words=_words(route),
            status=_str(res.get("status")),
            dose_ug=dose,
            timing=timing,
            has_prior_prescription=bool(res.get("priorPrescription")),
        )

    def _service_request(self, res: Resource, *, validate: bool = True) -> CodedRecord | None:
        if not self.codes.known(_codings(res.get("code"))):
            return None
        if validate:
            _validate(res)
        return self._coded(res, res.get("code"), res.get("authoredOn"))

    def _analyte_of(self, res: Resource) -> str | None:
        for coding in _codings(res.get("code")):
            name = self._analyte_by_code.get(coding)
            if name:
                return name
        return None

    def _ties(
        self,
        analyte: str,
        found: list[tuple[datetime | None, Resource]],
        latest: LabResult,
        today: date | None,
    ) -> list[tuple[int, LabResult]]:
        """`found[0]` is the latest usable result: it and the first usable result of each
        other value that ties with it (protocol D10), by index into `found`. Duplicates of a
        value count once, so a record of thousands of copies of one result stays cheap."""
        when, res = found[0]
        distinct = {value_key(latest): (0, latest)}
        for index, (other, other_res) in enumerate(found[1:], start=1):
            if _tied(when, res, other, other_res):
                result = self._result(analyte, other_res, other, today)
                if result.usable:
                    distinct.setdefault(value_key(result), (index, result))
        return list(distinct.values())

    def _conflicting(self, analyte: str, ties: list[tuple[int, LabResult]]) -> list[LabResult]:
        """The tied results, lowest value first, when they disagree; else none."""
        spec = self.protocol.observations.analytes[analyte]
        results = [r for _, r in ties]
        if len(results) < 2 or not disagree(results, spec):
            return []

        def order(result: LabResult) -> tuple[float, bool, str]:
            return (display_number(result, spec) or 0.0, bool(result.positive), result.reference)

        return sorted(results, key=order)

    def _result(
        self, analyte: str, res: Resource, when: datetime | None, today: date | None
    ) -> LabResult:
        spec = self.protocol.observations.analytes[analyte]
        reference = resource_reference(res)
        if spec.qualitative:
            return read_qualitative(analyte, reference, when, res, self.protocol, today)
        return read_quantity(analyte, reference, when, res, spec, today)
