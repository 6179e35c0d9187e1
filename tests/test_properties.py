"""Property-based tests over generated patient records (hypothesis)."""

from __future__ import annotations

from datetime import date, timedelta

from answers import answer, contradictions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from records import Record

from cds_service.clinical.extract import InvalidResourceError
from cds_service.clinical.regimen import Plan
from cds_service.engine import Engine
from cds_service.protocol import default_protocol

ENGINE = Engine.build()
PROTOCOL = default_protocol()
PROTOCOL_DOSES = {phase.dose_ug for r in PROTOCOL.regimens.regimens.values() for phase in r.phases}
CODE_ENTRIES = [
    (PROTOCOL.system_url(e.system), e.code, e.display or e.code)
    for vs in PROTOCOL.codes.value_sets.values()
    for e in vs.codes
    if e.system != "loinc"
]
PROCEDURES = ["430715008", "443906008", "53442002", "49209004", "107938000"]
MEDS = [
    "metformin 500 mg tablet",
    "omeprazole 20 mg capsule",
    "cyanocobalamin 1000 mcg/mL injection",
    "folic acid 1 mg tablet",
    "lisinopril 10 mg tablet",
    "hydroxocobalamin injection",
    "cyanocobalamin 1000 mcg tablet",
    "vitamin B12 1000 mcg sublingual",
]
UNITS = ["pmol/L", "pg/mL", "ng/L", "nmol/L", "mIU/mL", "pmol/l"]


@st.composite
def records(draw: st.DrawFn) -> tuple[Record, date]:
    start = draw(st.dates(date(2024, 1, 1), date(2030, 12, 31)))
    birth = start - timedelta(days=draw(st.integers(365 * 10, 365 * 95)))
    record = Record(birth_date=birth.isoformat(), gender=draw(st.sampled_from(["female", "male"])))
    for _ in range(draw(st.integers(0, 3))):
        unit = draw(st.sampled_from(UNITS))
        value = draw(st.floats(1, 3000, allow_nan=False))
        when = start - timedelta(days=draw(st.integers(1, 900)))
        record.lab("14685-2", value, unit, when.isoformat())
    for code, unit, top in (
        ("13964-2", "umol/L", 2.0),
        ("2284-8", "ng/mL", 20),
        ("718-7", "g/dL", 17),
        ("2823-3", "mmol/L", 6),
        ("13965-9", "umol/L", 40),
    ):
        if draw(st.booleans()):
            record.lab(code, draw(st.floats(0.01, top)), unit)
    for system, code, display in draw(st.lists(st.sampled_from(CODE_ENTRIES), max_size=4)):
        record.condition(
            system,
            code,
            display,
            clinical=draw(st.sampled_from(["active", "resolved", "relapse"])),
            verification=draw(st.sampled_from(["confirmed", "refuted", "provisional"])),
        )
    for code in draw(st.lists(st.sampled_from(PROCEDURES), max_size=2)):
        record.procedure(code)
    for text in draw(st.lists(st.sampled_from(MEDS), max_size=3)):
        route = draw(
            st.sampled_from(
                [None, ("47625008", "Intravenous route"), ("78421000", "Intramuscular route")]
            )
        )
        record.medication(
            text, status=draw(st.sampled_from(["active", "draft", "stopped"])), route=route
        )
    if draw(st.booleans()):
        record.allergy(draw(st.sampled_from(["Cobalt", "Penicillin", "Vitamin B12"])))
    for text in draw(st.lists(st.sampled_from(["Positive", "Negative", "Equivocal"]), max_size=1)):
        record.qualitative(draw(st.sampled_from(["31444-3", "8087-9", "2118-8"])), text)
    return record, start


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(records(), st.sampled_from(["standard", "fda-label", "nice-ng239"]))
def test_schedules_are_safe_and_well_formed(case: tuple[Record, date], profile: str) -> None:
    record, start = case
    plan = ENGINE.plan(record.resources, start=start, profile=profile)  # never raises
    assessment = plan.assessment
    if plan.recommended is None:
        assert not plan.alternatives
    for schedule in plan.schedules:
        phases = schedule.phases
        assert phases[0].start == start
        for before, after in zip(phases, phases[1:], strict=False):
            assert before.end is not None and after.start == before.end + timedelta(days=1)
        for p in phases:
            assert p.end is None or p.end >= p.start
            assert p.phase.route != "intravenous"
            assert p.phase.dose_ug in PROTOCOL_DOSES
        assert (phases[-1].end is None) == assessment.lifelong
    for series in ENGINE.medication_requests(plan).values():
        for mr in series:
            route = mr["dosageInstruction"][0]["route"]["coding"][0]["code"]
            assert route != "47625008"


@SETTINGS
@given(records(), st.sampled_from(["standard", "fda-label", "nice-ng239"]))
def test_options_sit_beside_the_recommendation_never_in_its_place(
    case: tuple[Record, date], profile: str
) -> None:
    """R7: an option is never the recommendation; sublingual only beside an oral schedule and
    only where absorption is normal; an individual interval only beside IM maintenance in
    pernicious anaemia or malabsorption."""
    record, start = case
    plan = ENGINE.plan(record.resources, start=start, profile=profile)
    a = plan.assessment
    if plan.recommended is not None:
        assert plan.recommended.rule_id != "R7"
    others = [s for s in plan.schedules if s.rule_id != "R7"]
    for schedule in plan.schedules:
        routes = {p.phase.route for p in schedule.phases}
        if "sublingual" in routes:
            assert schedule.rule_id == "R7" and not schedule.recommended
            assert a.type in ("dietary", "drug-associated")
            assert any(s.phases[-1].phase.route == "oral" for s in others)
        if schedule.regimen_id.endswith("-individual"):
            assert schedule.rule_id == "R7" and not schedule.recommended
            assert a.type in ("pernicious-anemia", "malabsorption")
            assert routes == {"intramuscular"}
            assert any(s.phases[-1].phase.route == "intramuscular" for s in others)


@SETTINGS
@given(records())
def test_no_schedule_unless_confirmed_and_uncontraindicated(case: tuple[Record, date]) -> None:
    record, start = case
    plan = ENGINE.plan(record.resources, start=start)
    a = plan.assessment
    if plan.recommended is not None:
        assert a.status == "confirmed"
        assert not {"S4", "S5", "S8"} & a.flags
        assert a.type not in (None, "inherited")


@SETTINGS
@given(records(), st.sampled_from(["standard", "fda-label", "nice-ng239"]))
def test_severe_deficiency_is_recommended_im_first(case: tuple[Record, date], profile: str) -> None:
    record, start = case
    plan = ENGINE.plan(record.resources, start=start, profile=profile)
    if plan.assessment.severity == "severe" and plan.recommended is not None:
        assert plan.recommended.phases[0].phase.route == "intramuscular"
        for schedule in plan.schedules:
            assert schedule.phases[0].phase.route == "intramuscular"


@SETTINGS
@given(records(), st.sampled_from(["patient-view", "order-sign"]))
def test_no_two_cards_contradict_and_no_card_proposes_iv(
    case: tuple[Record, date], hook: str
) -> None:
    record, start = case
    drafts = [r for r in record.resources if r.get("status") == "draft"]
    rest = [r for r in record.resources if r.get("status") != "draft"]
    cards = answer(
        ENGINE,
        rest,
        start=start,
        hook=hook,
        draft_orders=drafts if hook == "order-sign" else (),
    )
    assert contradictions(cards) == []


FIELDS = [
    "code",
    "coding",
    "system",
    "text",
    "status",
    "valueQuantity",
    "value",
    "unit",
    "clinicalStatus",
    "verificationStatus",
    "reaction",
    "substance",
    "dosageInstruction",
    "route",
    "doseAndRate",
    "doseQuantity",
    "interpretation",
    "effectiveDateTime",
    "medicationCodeableConcept",
    "birthDate",
]
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=6)
    | st.sampled_from(["active", "final", "draft", "14685-2", "http://loinc.org", "D51.0"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELDS), inner, max_size=4)
    ),
    max_leaves=12,
)
RESOURCES = st.builds(
    lambda kind, body: {**body, "resourceType": kind, "id": "x1"},
    st.sampled_from(
        [
            "Patient",
            "Condition",
            "Observation",
            "Procedure",
            "MedicationRequest",
            "MedicationStatement",
            "AllergyIntolerance",
            "ServiceRequest",
            "Basic",
        ]
    ),
    st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=6),
)


@SETTINGS
@given(st.lists(RESOURCES, max_size=5))
def test_malformed_records_are_rejected_cleanly_never_crash(
    resources: list[dict[str, object]],
) -> None:
    try:
        ENGINE.plan(resources, start=date(2026, 12, 1), draft_orders=resources)
    except InvalidResourceError as exc:
        assert "not valid FHIR R4" in str(exc)


UNUSABLE_B12 = st.sampled_from(
    [
        {"dataAbsentReason": {"text": "Haemolysed specimen"}},
        {"valueString": "haemolysed"},
        {"valueQuantity": {"value": 0, "unit": "pmol/L", "code": "pmol/L"}},
        {"valueQuantity": {"value": -12, "unit": "pg/mL", "code": "pg/mL"}},
        {"valueQuantity": {"value": 90000, "unit": "pmol/L", "code": "pmol/L"}},
        {"valueQuantity": {"value": "95", "unit": "pmol/L", "code": "pmol/L"}},
        {"valueQuantity": {"value": 95, "unit": "mIU/mL", "code": "m[IU]/mL"}},
        {"valueQuantity": {"value": 95, "unit": "pmol/L", "code": "pmol/L"}, "future": True},
    ]
)


def _decision(plan: Plan) -> tuple[object, ...]:
    a = plan.assessment
    return (
        a.status,
        a.type,
        [r for r in plan.rule_ids if r != "D9"],
        plan.recommended.regimen_id if plan.recommended else None,
        a.new_course,
    )


@SETTINGS
@given(records(), st.lists(UNUSABLE_B12, min_size=1, max_size=3))
def test_no_treatment_from_an_unusable_result(
    case: tuple[Record, date], bad: list[dict[str, object]]
) -> None:
    """Unusable B12 results, however recent, never change the decision: they are only named."""
    record, start = case
    before = ENGINE.plan(record.resources, start=start)
    for i, body in enumerate(bad):
        body = dict(body)
        future = body.pop("future", False)
        when = start + timedelta(days=30) if future else start - timedelta(days=i)
        record.resources.append(
            {
                "resourceType": "Observation",
                "id": f"bad-{i}",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "14685-2"}]},
                "subject": {"reference": "Patient/p1"},
                "effectiveDateTime": when.isoformat(),
                **body,
            }
        )
    after = ENGINE.plan(record.resources, start=start)
    assert _decision(after) == _decision(before)
    assert len(after.assessment.facts.unusable) >= 1 and "D9" in after.rule_ids
    if after.recommended is not None:
        a = after.assessment
        b12 = a.facts.results.get("b12")
        assert "D1" in a.deficiency_rules or (
            b12 is not None
            and b12.usable
            and b12.when is not None
            and (start - b12.when.date()).days <= a.profile.result_recency_days
        )
