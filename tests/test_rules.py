"""One test (at least) per protocol rule id, named after it (protocol.md sections 2-6)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from answers import answer, created, kind
from records import ICD, RXNORM, SNOMED, UCUM, Record

from cds_service.clinical.extract import InvalidResourceError, _codings, _words
from cds_service.clinical.regimen import Plan
from cds_service.engine import Engine

ENGINE = Engine.build()
PROTOCOL = ENGINE.protocol
START = date(2026, 12, 1)
IV = ("47625008", "Intravenous route")
IM = ("78421000", "Intramuscular route")


def plan(record: Record, profile: str | None = None) -> Plan:
    return ENGINE.plan(record.resources, start=START, profile=profile)


def low_b12() -> Record:
    return Record().b12(110)


# --- D-rules: deficiency status -------------------------------------------------------------


def test_D1_condition_confirms_regardless_of_labs() -> None:
    p = plan(Record().condition(ICD, "D51.9").b12(400))
    assert p.assessment.status == "confirmed"
    assert p.assessment.deficiency_rules == ("D1",)


def test_D1_ignores_refuted_resolved_and_entered_in_error_conditions() -> None:
    for clinical, verification in (
        ("resolved", "confirmed"),
        ("active", "refuted"),
        ("active", "entered-in-error"),
    ):
        record = Record().condition(ICD, "D51.9", clinical=clinical, verification=verification)
        assert plan(record).assessment.status == "unknown"


UNCONFIRMED = ("provisional", "differential", "unconfirmed")


def test_D1_amended_an_unconfirmed_diagnosis_does_not_confirm() -> None:
    for verification in UNCONFIRMED:
        alone = plan(Record().condition(ICD, "D51.9", verification=verification)).assessment
        assert (alone.status, alone.deficiency_rules) == ("unknown", ("D6",))
        assert [e.reference for e in alone.unconfirmed_evidence] == ["Condition/cond-1"]
        borderline = plan(Record().condition(ICD, "D51.9", verification=verification).b12(185))
        assert borderline.assessment.deficiency_rules == ("D4",)
        assert borderline.recommended is None
    # No verificationStatus at all counts as before.
    record = Record().condition(ICD, "D51.9")
    del record.resources[-1]["verificationStatus"]
    assert plan(record).assessment.deficiency_rules == ("D1",)


def test_D1_amended_an_unconfirmed_cause_does_not_set_the_type() -> None:
    a = plan(low_b12().condition(SNOMED, "84027009", verification="differential")).assessment
    assert (a.status, a.type) == ("confirmed", "unspecified")
    assert any("unconfirmed" in e.text for e in a.unconfirmed_evidence)
    gastrectomy = plan(low_b12().condition(ICD, "Z90.3", verification="provisional")).assessment
    assert gastrectomy.type == "unspecified" and not gastrectomy.lifelong
    confirmed = plan(low_b12().condition(SNOMED, "84027009")).assessment
    assert confirmed.type == "pernicious-anemia" and not confirmed.unconfirmed_evidence


def test_D1_amended_safety_rules_still_heed_an_unconfirmed_condition() -> None:
    p = plan(low_b12().condition(ICD, "H47.22", verification="provisional"))
    assert "S5" in flags(p) and p.recommended is None


def test_D1_matches_icd10cm_with_and_without_the_dot() -> None:
    assert plan(Record().condition(ICD, "D519")).assessment.status == "confirmed"
    assert plan(Record().condition(SNOMED, "190634004")).assessment.status == "confirmed"


def test_D2_low_b12_confirms_in_either_unit_family() -> None:
    for value, unit in ((147, "pmol/L"), (199, "pg/mL"), (199, "ng/L")):
        p = plan(Record().b12(value, unit))
        assert (p.assessment.status, p.assessment.deficiency_rules) == ("confirmed", ("D2",))


def test_D2_latest_result_wins() -> None:
    p = plan(Record().b12(100, when="2025-01-01").b12(400, when="2026-09-01"))
    assert p.assessment.status == "not-deficient"
    p = plan(Record().b12(400, when="2025-01-01").b12(100, when="2026-09-01"))
    assert p.assessment.status == "confirmed"


def test_D2_ignores_cancelled_and_entered_in_error_results() -> None:
    record = Record().b12(400, when="2026-01-15")
    record.lab("14685-2", 90, "pmol/L", when="2026-09-01", status="entered-in-error")
    assert plan(record).assessment.status == "not-deficient"


def test_D3_borderline_with_raised_mma_or_homocysteine_confirms() -> None:
    assert plan(Record().b12(180).lab("13964-2", 0.55, "umol/L")).assessment.status == "confirmed"
    assert plan(Record().b12(180).lab("13964-2", 550, "nmol/L")).assessment.status == "confirmed"
    assert plan(Record().b12(180).lab("13965-9", 18, "umol/L")).assessment.status == "confirmed"


def test_D3_borderline_with_normal_mma_is_not_deficient() -> None:
    p = plan(Record().b12(180).lab("13964-2", 0.30, "umol/L"))
    assert (p.assessment.status, p.assessment.deficiency_rules) == ("not-deficient", ("D3",))


def test_D4_borderline_without_mma_is_indeterminate_with_no_schedule() -> None:
    for value, unit in ((148, "pmol/L"), (221, "pmol/L"), (200, "pg/mL"), (300, "pg/mL")):
        p = plan(Record().b12(value, unit))
        assert (p.assessment.status, p.assessment.deficiency_rules) == ("indeterminate", ("D4",))
        assert p.recommended is None


def test_D5_b12_above_range_is_not_deficient() -> None:
    p = plan(Record().b12(222))
    assert (p.assessment.status, p.assessment.deficiency_rules) == ("not-deficient", ("D5",))
    assert p.recommended is None and not p.assessment.findings


def test_D6_no_result_and_no_condition_is_unknown() -> None:
    p = plan(Record())
    assert (p.assessment.status, p.assessment.deficiency_rules) == ("unknown", ("D6",))


def test_D6_an_unknown_unit_is_never_guessed() -> None:
    p = plan(Record().b12(100, when="2025-01-01").lab("2132-9", 90, "mIU/mL", when="2026-09-01"))
    assert p.assessment.status == "unknown"
    assert [r.analyte for r in p.assessment.unusable] == ["b12"]
    assert "unknown unit" in (p.assessment.unusable[0].problem or "")


def test_D7_very_high_b12_without_supplement() -> None:
    assert plan(Record().b12(1001, "pg/mL")).assessment.deficiency_rules == ("D7",)
    assert plan(Record().b12(1000, "pg/mL")).assessment.deficiency_rules == ("D5",)
    on_b12 = Record().b12(1500, "pg/mL").medication("cyanocobalamin 1000 mcg tablet")
    assert plan(on_b12).assessment.deficiency_rules == ("D5",)


def test_D_thresholds_follow_the_profile() -> None:
    record = Record().b12(190, "pg/mL")
    assert plan(record).assessment.status == "confirmed"
    assert plan(record, "nice-ng239").assessment.status == "indeterminate"


# --- T-rules: deficiency type (first match wins) --------------------------------------------


def test_T1_inherited_disorder_gets_no_schedule() -> None:
    p = plan(low_b12().condition(ICD, "D51.2"))
    assert p.assessment.type == "inherited" and p.recommended is None


def test_T2_pernicious_anemia_by_condition_or_antibody() -> None:
    assert plan(low_b12().condition(SNOMED, "84027009")).assessment.type == "pernicious-anemia"
    assert plan(low_b12().qualitative("31444-3", "Positive")).assessment.type == "pernicious-anemia"
    assert plan(low_b12().qualitative("31444-3", "Negative")).assessment.type == "unspecified"
    both = low_b12().condition(SNOMED, "84568007").qualitative("8087-9", "Positive")
    assert plan(both).assessment.type == "pernicious-anemia"
    assert plan(low_b12().condition(SNOMED, "84568007")).assessment.type == "unspecified"


def test_T2_wins_over_later_rules() -> None:
    p = plan(low_b12().condition(ICD, "D51.0").medication("metformin 500 mg tablet"))
    assert p.assessment.type == "pernicious-anemia"


def test_T3_malabsorption_names_the_cause() -> None:
    for record, cause in (
        (low_b12().procedure("443906008"), "bariatric-surgery"),
        (low_b12().condition(ICD, "Z90.3"), "gastrectomy"),
        (low_b12().procedure("107938000"), "ileal-resection"),
        (low_b12().condition(ICD, "K50.012"), "crohn-disease"),
        (low_b12().condition(ICD, "K90.0"), "celiac-disease"),
    ):
        a = plan(record).assessment
        assert a.type == "malabsorption" and [c.id for c in a.causes] == [cause]


def resection(note: str | None = None, site: str | None = None) -> Record:
    record = low_b12().procedure("107938000")
    if note:
        record.resources[-1]["note"] = [{"text": note}]
    if site:
        record.resources[-1]["bodySite"] = [{"text": site}]
    return record


def test_T3_amended_short_bowel_syndrome_and_total_gastrectomy_are_lifelong() -> None:
    for record in (
        low_b12().condition(SNOMED, "26629001"),
        low_b12().condition(ICD, "K90.821"),
        low_b12().condition(ICD, "K90829"),
        low_b12().procedure("26452005"),
    ):
        p = plan(record)
        assert p.assessment.type == "malabsorption" and p.assessment.lifelong
        assert p.recommended and p.recommended.phases[-1].end is None
    assert [c.id for c in plan(low_b12().condition(SNOMED, "26629001")).assessment.causes] == [
        "short-bowel-syndrome"
    ]


def test_T3_amended_ileal_resection_is_lifelong_above_20_cm_or_when_unknown() -> None:
    cases = {
        None: True,  # no length recorded: treated as lifelong, and said so
        "Terminal ileum resected, 45 cm": True,
        "20 cm of ileum resected": False,
        "15 cm of terminal ileum removed": False,
        "Resection: 150 mm": False,
        "Right hemicolectomy; 150 cm small bowel remaining": True,  # remnant, not resected
        "Ileum resected": True,  # no number
    }
    for note, lifelong in cases.items():
        a = plan(resection(note)).assessment
        assert a.lifelong is lifelong, note
        assert a.cause_notes and a.cause_notes[0].startswith("ileal resection")
    assert "not recorded" in plan(resection()).assessment.cause_notes[0]
    assert not plan(resection(site="terminal ileum, 12 cm")).assessment.lifelong
    short = plan(resection("15 cm of ileum resected")).recommended
    assert short and short.phases[-1].end == date(2027, 4, 11)


def test_T3_amended_resected_length_from_an_observation_part_of_the_procedure() -> None:
    record = resection()
    record.resources.append(
        {
            "resourceType": "Observation",
            "id": "len-1",
            "status": "final",
            "code": {"text": "Length of ileum resected"},
            "subject": {"reference": "Patient/p1"},
            "partOf": [{"reference": "Procedure/proc-2"}],
            "valueQuantity": {"value": 0.6, "unit": "m", "system": UCUM, "code": "m"},
        }
    )
    a = plan(record).assessment
    assert a.lifelong and "60 cm" in a.cause_notes[0]
    short = {"value": 18, "unit": "cm", "system": UCUM, "code": "cm"}
    record.resources[-1]["valueQuantity"] = short
    assert not plan(record).assessment.lifelong


def test_T4_drug_associated_by_medication_text() -> None:
    a = plan(
        low_b12().medication("Omeprazole 20 mg capsule", kind="MedicationStatement")
    ).assessment
    assert a.type == "drug-associated" and [c.id for c in a.causes] == ["acid-suppression"]
    stopped = low_b12().medication("metformin 500 mg tablet", status="stopped")
    assert plan(stopped).assessment.type == "unspecified"


def test_T5_dietary() -> None:
    a = plan(low_b12().condition(SNOMED, "281015005")).assessment
    assert a.type == "dietary" and a.lifelong
    assert plan(low_b12().condition(ICD, "D51.3")).assessment.type == "dietary"


def test_T6_unspecified_when_nothing_explains_it() -> None:
    a = plan(low_b12()).assessment
    assert a.type == "unspecified" and a.type_rule and a.type_rule.id == "T6"


# --- S-rules: safety and severity -----------------------------------------------------------


def flags(p: Plan) -> set[str]:
    return set(p.assessment.flags)


def test_S1_neurological_involvement_is_critical_severe_and_forces_im() -> None:
    p = plan(low_b12().condition(SNOMED, "42345000").medication("metformin 850 mg tablet"))
    assert "S1" in flags(p) and p.assessment.severity == "severe"
    assert p.recommended and p.recommended.rule_id == "R2"
    assert {ph.phase.route for ph in p.recommended.phases} == {"intramuscular"}
    assert not {"S1"} & flags(plan(Record().b12(400).condition(SNOMED, "42345000")))


def test_S2_intravenous_b12_order_is_flagged() -> None:
    draft = low_b12().medication("cyanocobalamin injection", status="draft", route=IV)
    assert "S2" in flags(plan(draft))
    active = low_b12().medication("cyanocobalamin injection", route=IV)
    assert "S2" in flags(plan(active))
    im = low_b12().medication("cyanocobalamin injection", status="draft", route=IM)
    assert "S2" not in flags(plan(im))


def test_S3_folate_deficiency_and_folic_acid_alone() -> None:
    assert "S3" in flags(plan(low_b12().lab("2284-8", 3.9, "ng/mL")))
    assert "S3" not in flags(plan(low_b12().lab("2284-8", 4.0, "ng/mL")))
    folic_only = Record().b12(180).medication("folic acid 1 mg tablet", status="draft")
    assert "S3" in flags(plan(folic_only))
    with_b12 = folic_only.medication("cyanocobalamin 1000 mcg/mL injection", status="draft")
    assert "S3" not in flags(plan(with_b12))


def test_S3_amended_low_folate_warns_while_b12_deficiency_is_indeterminate() -> None:
    borderline = plan(Record().b12(180).lab("2284-8", 3.1, "ng/mL"))
    assert borderline.assessment.status == "indeterminate" and "S3" in flags(borderline)
    assert "S3" not in flags(plan(Record().b12(400).lab("2284-8", 3.1, "ng/mL")))
    assert "S3" not in flags(plan(Record().b12(180).lab("2284-8", 6.0, "ng/mL")))


def test_S4_cobalt_or_cobalamin_allergy_blocks_the_schedule() -> None:
    p = plan(low_b12().allergy("Cobalt"))
    assert "S4" in flags(p) and p.recommended is None
    assert "S4" not in flags(plan(low_b12().allergy("Cobalt", clinical="resolved")))
    assert "S4" not in flags(plan(low_b12().allergy("Penicillin")))


def test_S5_leber_optic_neuropathy_blocks_cyanocobalamin() -> None:
    p = plan(low_b12().condition(ICD, "H47.22"))
    assert "S5" in flags(p) and p.recommended is None


def test_S6_severe_anaemia_or_low_potassium_adds_potassium_monitoring() -> None:
    for extra in (("718-7", 7.9, "g/dL"), ("718-7", 79, "g/L"), ("2823-3", 3.4, "mmol/L")):
        p = plan(low_b12().lab(*extra))
        assert "S6" in flags(p) and "M4" in p.rule_ids
    assert "S6" not in flags(plan(low_b12().lab("718-7", 8.0, "g/dL")))
    # A low potassium alone is a monitoring finding, not a severe deficiency (R6).
    assert plan(low_b12().lab("2823-3", 3.4, "mmol/L")).assessment.severity == "not-severe"


def test_S7_current_therapy_means_no_new_course() -> None:
    p = plan(low_b12().medication("cyanocobalamin 1000 mcg/mL injection", rxnorm="309594"))
    assert "S7" in flags(p) and not p.assessment.new_course
    draft = low_b12().medication("cyanocobalamin 1000 mcg/mL injection", status="draft")
    assert "S7" in flags(plan(draft))
    assert not plan(
        Record().medication("cyanocobalamin injection", status="draft")
    ).assessment.findings


def test_S7_a_statement_still_active_whose_period_ended_is_not_current_therapy() -> None:
    def statement(end: str) -> Record:
        record = low_b12().medication(
            "cyanocobalamin 1000 mcg/mL injection", kind="MedicationStatement"
        )
        record.resources[-1]["effectivePeriod"] = {"start": "2024-01-05", "end": end}
        return record

    ended = plan(statement("2024-06-30"))
    assert "S7" not in flags(ended) and ended.assessment.new_course
    assert "S7" in flags(plan(statement((START + timedelta(days=30)).isoformat())))


ORAL = ("26643006", "Oral route")
SUBLINGUAL = ("37839007", "Sublingual route")


def test_S7_amended_only_adequate_therapy_stops_a_new_course() -> None:
    iv_only = plan(low_b12().medication("cyanocobalamin injection", route=IV))
    assert "S7" not in flags(iv_only) and iv_only.assessment.new_course
    im_and_iv = low_b12().medication("cyanocobalamin injection", route=IM)
    im_and_iv.medication("cyanocobalamin injection", status="draft", route=IV)
    p = plan(im_and_iv)
    assert {"S2", "S7"} <= flags(p) and not p.assessment.new_course


def test_S11_oral_therapy_with_a_malabsorptive_cause_switches_to_im() -> None:
    for route in (ORAL, SUBLINGUAL):
        record = low_b12().condition(ICD, "D51.0")
        record.medication("cyanocobalamin 1000 mcg", route=route, kind="MedicationStatement")
        p = plan(record)
        assert "S11" in flags(p) and "S7" not in flags(p)
        assert p.assessment.new_course and p.assessment.switch
        assert p.assessment.switch.rule.id == "S11"
        assert p.recommended and p.recommended.phases[0].phase.route == "intramuscular"
    bariatric = low_b12().procedure("430715008").medication("cyanocobalamin 1000 mcg tablet")
    p = plan(bariatric)
    assert "S11" in flags(p) and p.recommended and p.recommended.rule_id == "R2"
    assert p.recommended.phases[-1].phase.route == "intramuscular"


def test_S11_oral_therapy_with_neurological_involvement_switches_to_im() -> None:
    record = low_b12().condition(SNOMED, "42345000")
    record.medication("cyanocobalamin 1000 mcg tablet", status="draft", route=ORAL)
    assert {"S1", "S11"} <= flags(plan(record)) and "S7" not in flags(plan(record))


def test_S11_b12_still_deficient_four_weeks_into_oral_therapy() -> None:
    def on_oral_since(started: str) -> Plan:
        record = Record().b12(110, when="2026-10-13").medication("metformin 500 mg tablet")
        record.medication("cyanocobalamin 1000 mcg tablet")
        record.resources[-1]["authoredOn"] = started
        return plan(record)

    failing = on_oral_since("2026-09-15")  # 28 days before the result
    assert "S11" in flags(failing) and failing.recommended
    assert failing.recommended.rule_id == "R2"
    recent = on_oral_since("2026-09-16")  # 27 days: too early to call it failing
    assert "S11" not in flags(recent) and "S7" in flags(recent)


def test_S11_does_not_fire_on_injections_or_on_adequate_oral_therapy() -> None:
    injected = low_b12().condition(ICD, "D51.0").medication("cyanocobalamin 1000 mcg/mL injection")
    assert "S11" not in flags(plan(injected)) and "S7" in flags(plan(injected))
    both = low_b12().condition(ICD, "D51.0").medication("cyanocobalamin injection", route=IM)
    both.medication("cyanocobalamin 1000 mcg tablet", route=ORAL)
    assert "S11" not in flags(plan(both))
    dietary = low_b12().condition(SNOMED, "281015005").medication("cyanocobalamin tablet")
    assert "S11" not in flags(plan(dietary)) and "S7" in flags(plan(dietary))


def test_S8_under_18_gets_no_schedule() -> None:
    p = ENGINE.plan(Record(birth_date="2009-12-02").b12(110).resources, start=START)
    assert "S8" in flags(p) and p.recommended is None
    adult = ENGINE.plan(Record(birth_date="2008-12-01").b12(110).resources, start=START)
    assert "S8" not in flags(adult) and adult.recommended is not None


def test_S9_pregnancy_warns() -> None:
    assert "S9" in flags(plan(low_b12().condition(SNOMED, "77386006")))
    assert "S9" in flags(plan(low_b12().qualitative("2118-8", "Positive")))


def test_S9_a_positive_pregnancy_test_counts_for_the_length_of_a_pregnancy() -> None:
    """280 days (observations.yaml applies_for_days): recent means pregnant, a year-old test not."""
    window = PROTOCOL.observations.analytes["pregnancy_test"].applies_for_days
    assert window == 280
    last_day = (START - timedelta(days=window)).isoformat()  # 2026-02-24
    day_after = (START - timedelta(days=window + 1)).isoformat()
    for when, pregnant in (("2026-11-20", True), (last_day, True), (day_after, False)):
        p = plan(low_b12().qualitative("2118-8", "Positive", when=when))
        assert ("S9" in flags(p)) is pregnant, when
    year_old = plan(low_b12().qualitative("2118-8", "Positive", when="2025-11-15"))
    # Not pregnant now, and not a stale result to repeat either: it is simply no longer read.
    assert "S9" not in flags(year_old) and year_old.assessment.stale == ()
    assert "D9" not in year_old.assessment.deficiency_rules
    # The latest test decides: a later negative ends an earlier positive.
    ended = low_b12().qualitative("2118-8", "Positive", when="2026-05-01")
    assert "S9" not in flags(plan(ended.qualitative("2118-8", "Negative", when="2026-10-01")))


def test_S9_an_active_pregnancy_condition_counts_however_old() -> None:
    record = low_b12().condition(SNOMED, "77386006")
    record.resources[-1]["recordedDate"] = "2024-01-10"
    record.resources[-1]["onsetDateTime"] = "2024-01-01"
    assert "S9" in flags(plan(record))
    # ... beside a year-old positive test, the Condition still decides.
    assert "S9" in flags(plan(record.qualitative("2118-8", "Positive", when="2025-06-01")))
    resolved = low_b12().condition(SNOMED, "77386006", clinical="resolved")
    assert "S9" not in flags(plan(resolved))


def test_S10_titration_on_biomarkers() -> None:
    on_therapy = low_b12().medication("cyanocobalamin 1000 mcg/mL injection")
    assert "S10" in flags(plan(on_therapy.draft_test("13964-2")))
    changed = low_b12().medication("cyanocobalamin injection")
    changed.medication("cyanocobalamin injection", status="draft", prior=True)
    assert "S10" in flags(plan(changed))
    assert "S10" not in flags(plan(low_b12().draft_test("14685-2")))


# --- R-rules: regimens ----------------------------------------------------------------------


def test_R1_pernicious_anemia_standard_fda_and_nice() -> None:
    record = low_b12().condition(ICD, "D51.0")
    p = plan(record)
    assert p.recommended and p.recommended.rule_id == "R1"
    assert [ph.phase.id for ph in p.recommended.phases] == [
        "loading",
        "alternate-days",
        "every-3-4-days",
        "maintenance",
    ]
    assert {ph.phase.dose_ug for ph in p.recommended.phases} == {1000}
    assert p.recommended.phases[-1].end is None
    assert [s.regimen_id for s in p.alternatives if s.rule_id != "R7"] == [
        "cyanocobalamin-im-100-fda",
        "cyanocobalamin-im-then-oral",
    ]
    fda = plan(record, "fda-label").recommended
    assert fda and {ph.phase.dose_ug for ph in fda.phases} == {100}
    nice = plan(record, "nice-ng239").recommended
    assert nice and nice.regimen_id == "hydroxocobalamin-im-nice"


def test_R1_phase_dates_chain_from_the_start_date() -> None:
    p = plan(low_b12().condition(ICD, "D51.0"))
    assert p.recommended
    spans = [
        (ph.start.isoformat(), ph.end.isoformat() if ph.end else None)
        for ph in p.recommended.phases
    ]
    assert spans == [
        ("2026-12-01", "2026-12-07"),
        ("2026-12-08", "2026-12-21"),
        ("2026-12-22", "2027-01-11"),
        ("2027-01-12", None),
    ]


def test_R2_malabsorption_im_lifelong_only_for_lifelong_causes() -> None:
    gastrectomy = plan(low_b12().condition(ICD, "Z90.3")).recommended
    assert gastrectomy and gastrectomy.rule_id == "R2" and gastrectomy.phases[-1].end is None
    coeliac = plan(low_b12().condition(ICD, "K90.0")).recommended
    assert coeliac and coeliac.rule_id == "R2"
    assert coeliac.phases[-1].end == date(2027, 4, 11)


def test_R3_bariatric_surgery_oral_maintenance_for_life() -> None:
    p = plan(low_b12().procedure("430715008"))
    assert p.recommended and p.recommended.rule_id == "R3"
    last = p.recommended.phases[-1]
    assert last.phase.route == "oral" and last.end is None
    assert [s.regimen_id for s in p.alternatives if s.rule_id != "R7"] == ["cyanocobalamin-im-1000"]


def test_R4_dietary_or_drug_associated_oral() -> None:
    p = plan(low_b12().medication("metformin 500 mg tablet"))
    assert p.recommended and p.recommended.rule_id == "R4"
    assert [ph.phase.route for ph in p.recommended.phases] == ["oral"]
    assert [s.regimen_id for s in p.alternatives if s.rule_id != "R7"] == ["cyanocobalamin-im-1000"]


def test_R5_oral_maintenance_offered_when_absorption_is_normal() -> None:
    p = plan(low_b12())
    assert [(s.rule_id, s.regimen_id) for s in p.alternatives] == [
        ("R5", "cyanocobalamin-im-then-oral")
    ]
    assert "R5" in p.rule_ids
    assert "R5" not in plan(low_b12().condition(ICD, "Z90.3")).rule_ids


def test_R6_severe_deficiency_gets_im_first_whatever_the_type() -> None:
    severe_causes = (
        low_b12().lab("718-7", 6.9, "g/dL").condition(SNOMED, "281015005"),  # dietary, Hb < 8
        low_b12().condition(ICD, "D61.818").medication("metformin 500 mg tablet"),  # pancytopenia
        low_b12().lab("718-7", 7.0, "g/dL").procedure("430715008"),  # bariatric
        low_b12().lab("718-7", 7.0, "g/dL").condition(SNOMED, "127034005"),  # unspecified
    )
    for record in severe_causes:
        for profile in ("standard", "fda-label", "nice-ng239"):
            p = plan(record, profile)
            assert p.assessment.severity == "severe", profile
            assert p.recommended and p.recommended.rule_id == "R6", profile
            assert {ph.phase.route for ph in p.recommended.phases} == {"intramuscular"}
            for alt in p.alternatives:
                assert alt.phases[0].phase.route == "intramuscular", (profile, alt.regimen_id)
    # Hb 8.0 is not severe: the dietary patient keeps oral first (R4).
    mild = plan(low_b12().lab("718-7", 8.0, "g/dL").condition(SNOMED, "281015005"))
    assert mild.assessment.severity == "not-severe"
    assert mild.recommended and mild.recommended.rule_id == "R4"
    # Severity needs a confirmed deficiency.
    assert plan(Record().b12(400).lab("718-7", 6.0, "g/dL")).assessment.severity == "not-severe"


def test_R6_severity_from_neurological_involvement_names_what_s1_saw() -> None:
    # `flag: S1` in the severity rule carries S1's evidence, so the card's "Severe (...)" line
    # names the neuropathy rather than nothing.
    p = plan(low_b12().condition(SNOMED, "42345000").medication("metformin 850 mg tablet"))
    s1 = next(f for f in p.assessment.findings if f.rule.id == "S1")
    assert p.assessment.severity_evidence
    assert set(s1.evidence) <= set(p.assessment.severity_evidence)


def test_R6_fda_label_offers_no_oral_alternative_for_an_unexplained_severe_deficiency() -> None:
    p = plan(low_b12().lab("718-7", 7.0, "g/dL"), "fda-label")
    assert p.recommended and p.recommended.rule_id == "R6" and not p.alternatives
    standard = plan(low_b12().lab("718-7", 7.0, "g/dL"))
    assert [(s.rule_id, s.regimen_id) for s in standard.alternatives] == [
        ("R5", "cyanocobalamin-im-then-oral")
    ]


def test_R7_sublingual_beside_oral_where_absorption_is_normal() -> None:
    for record in (
        low_b12().medication("metformin 500 mg tablet"),  # T4
        low_b12().condition(SNOMED, "281015005"),  # T5 vegan
        low_b12().condition(SNOMED, "440711000124105"),  # T5 inadequate intake
    ):
        for profile in ("standard", "fda-label", "nice-ng239"):
            p = plan(record, profile)
            # The recommendation is still R4's oral schedule: R7 only adds beside it.
            assert p.recommended and p.recommended.regimen_id == "cyanocobalamin-oral-1000"
            assert p.recommended.rule_id == "R4"
            r7 = [s for s in p.alternatives if s.rule_id == "R7"]
            assert [s.regimen_id for s in r7] == ["cyanocobalamin-sublingual-1000"], profile
            assert not r7[0].recommended and "R7" in p.rule_ids
            series = ENGINE.medication_requests(p)["cyanocobalamin-sublingual-1000"]
            (mr,) = series
            dosage = mr["dosageInstruction"][0]
            assert dosage["route"]["coding"][0]["code"] == "37839007"
            assert dosage["doseAndRate"][0]["doseQuantity"]["value"] == 1000
            assert dosage["timing"]["repeat"]["periodUnit"] == "d"
            assert "sublingual" in mr["medicationCodeableConcept"]["text"]
            # No RxNorm code was verified for the tablet (regimens.yaml): text only.
            assert "coding" not in mr["medicationCodeableConcept"]


def test_R7_severe_dietary_deficiency_gets_sublingual_only_after_im_loading() -> None:
    record = low_b12().lab("718-7", 6.9, "g/dL").condition(SNOMED, "281015005")
    for profile, twin in (
        ("standard", "cyanocobalamin-im-then-sublingual"),
        ("fda-label", "cyanocobalamin-im-then-sublingual"),
        ("nice-ng239", "hydroxocobalamin-im-nice-then-sublingual"),
    ):
        p = plan(record, profile)
        assert p.recommended and p.recommended.rule_id == "R6"
        assert {ph.phase.route for ph in p.recommended.phases} == {"intramuscular"}
        (r7,) = [s for s in p.alternatives if s.rule_id == "R7"]
        assert r7.regimen_id == twin
        assert r7.phases[0].phase.route == "intramuscular"
        assert r7.phases[-1].phase.route == "sublingual"


def test_R7_never_sublingual_for_malabsorption_pernicious_anaemia_or_an_unknown_cause() -> None:
    for record in (
        low_b12().condition(ICD, "D51.0"),  # T2
        low_b12().procedure("443906008"),  # T3 bariatric: oral maintenance, yet not normal
        low_b12().condition(ICD, "K90.0"),  # T3 coeliac
        low_b12(),  # T6: absorption not known to be normal
        low_b12().condition(ICD, "G62.9").medication("metformin 500 mg tablet"),  # S1: IM only
    ):
        for profile in ("standard", "fda-label", "nice-ng239"):
            p = plan(record, profile)
            routes = {ph.phase.route for s in p.schedules for ph in s.phases}
            assert "sublingual" not in routes, profile


def test_R7_individual_interval_beside_im_maintenance_in_malabsorption() -> None:
    for record, profile, beside, twin in (
        (
            low_b12().condition(ICD, "D51.0"),
            "standard",
            "cyanocobalamin-im-1000",
            "cyanocobalamin-im-1000-individual",
        ),
        (
            low_b12().condition(ICD, "D51.0"),
            "fda-label",
            "cyanocobalamin-im-100-fda",
            "cyanocobalamin-im-100-fda-individual",
        ),
        (
            low_b12().condition(ICD, "D51.0"),
            "nice-ng239",
            "hydroxocobalamin-im-nice",
            "hydroxocobalamin-im-nice-individual",
        ),
        (
            low_b12().condition(ICD, "K90.0"),
            "standard",
            "cyanocobalamin-im-1000",
            "cyanocobalamin-im-1000-individual",
        ),
        (
            low_b12().condition(ICD, "K90.0").condition(ICD, "G62.9"),
            "nice-ng239",
            "hydroxocobalamin-im-nice-neuro",
            "hydroxocobalamin-im-nice-neuro-individual",
        ),
        # Bariatric surgery: oral maintenance first (R3), IM maintenance beside it, and the
        # individual interval beside that.
        (
            low_b12().procedure("443906008"),
            "standard",
            "cyanocobalamin-im-1000",
            "cyanocobalamin-im-1000-individual",
        ),
    ):
        p = plan(record, profile)
        assert p.recommended
        offered = [s.regimen_id for s in p.schedules]
        assert beside in offered and offered[-1] == twin, (profile, offered)
        r7 = p.schedules[-1]
        assert r7.rule_id == "R7" and not r7.recommended
        assert p.recommended.rule_id != "R7" and p.recommended.regimen_id != twin
        maintenance = r7.phases[-1].phase
        assert maintenance.maintenance and maintenance.route == "intramuscular"
        t = maintenance.timing
        assert (t.frequency, t.period, t.period_max, t.period_unit) == (1, 2, 4, "wk")
        # A clinician's choice for symptoms that come back early, never an automatic change.
        assert maintenance.condition and "before the next maintenance dose" in maintenance.condition
        assert "twice a week" in maintenance.condition
        series = ENGINE.medication_requests(p)[twin]
        notes = [n["text"] for n in series[-1]["note"]]
        assert maintenance.condition in notes
        assert series[-1]["dosageInstruction"][0]["timing"]["repeat"]["periodMax"] == 4


def test_R7_no_individual_interval_where_absorption_is_normal_or_the_cause_unknown() -> None:
    for record in (
        low_b12().medication("metformin 500 mg tablet"),
        low_b12().condition(SNOMED, "281015005"),
        low_b12(),
        low_b12().lab("718-7", 6.9, "g/dL").condition(SNOMED, "281015005"),
    ):
        for profile in ("standard", "fda-label", "nice-ng239"):
            p = plan(record, profile)
            assert not any(s.regimen_id.endswith("-individual") for s in p.schedules)


# --- M-rules: monitoring --------------------------------------------------------------------


def test_M1_M2_M3_come_with_every_schedule() -> None:
    assert {"M1", "M2", "M3"} <= set(plan(low_b12()).rule_ids)
    assert not {"M1", "M2", "M3"} & set(plan(Record().b12(400)).rule_ids)


def test_M4_only_with_S6() -> None:
    assert "M4" not in plan(low_b12()).rule_ids
    assert "M4" in plan(low_b12().lab("2823-3", 3.1, "mmol/L")).rule_ids


# --- Medications: B12 and folate products recognised by ingredient (protocol 1.1) -----------

RXNORM_B12_ORAL = ("211965", "Vitamin B 12 1 MG Oral Tablet")


def test_Medications_b12_products_recognised_by_ingredient_in_any_form() -> None:
    def is_b12(concept: dict[str, object]) -> bool:
        return ENGINE.assessor.codes.matches("b12_product", _codings(concept), _words(concept))

    named = {
        "coding": [{"system": RXNORM, "code": RXNORM_B12_ORAL[0], "display": RXNORM_B12_ORAL[1]}]
    }
    assert is_b12(named)  # the RxNorm name carries the ingredient
    for text in (
        "Vitamin B-12 1000 mcg sublingual tablet",
        "vit B 12 tablets",
        "Mecobalamin 500 mcg tablet",
        "methylcobalamin 1 mg",
        "Nascobal 500 mcg/spray nasal spray",
        "hydroxocobalamin 1 mg/mL injection",
    ):
        assert is_b12({"text": text}), text
    for text in ("Vitamin B6 25 mg tablet", "Vitamin D3 1000 unit capsule", "Lisinopril 10 mg"):
        assert not is_b12({"text": text}), text
    # An RxCUI that no stored source verified is not matched on its number alone.
    assert not is_b12({"coding": [{"system": RXNORM, "code": RXNORM_B12_ORAL[0]}]})


def test_Medications_current_b12_therapy_by_rxnorm_name_and_folates_by_text() -> None:
    on_b12 = Record().b12(1450, "pg/mL")
    on_b12.resources.append(
        {
            "resourceType": "MedicationStatement",
            "id": "ms-1",
            "status": "active",
            "medicationCodeableConcept": {
                "coding": [
                    {"system": RXNORM, "code": RXNORM_B12_ORAL[0], "display": RXNORM_B12_ORAL[1]}
                ]
            },
            "subject": {"reference": "Patient/p1"},
        }
    )
    assert plan(on_b12).assessment.deficiency_rules == ("D5",)  # not D7: B12 is being taken
    folate = Record().b12(190).medication("L-methylfolate 15 MG Oral Tablet", status="draft")
    assert "S3" in flags(plan(folate))
    covered = folate.medication("Vitamin B 12 1 MG Oral Tablet", status="draft")
    assert "S3" not in flags(plan(covered))


# --- D9: only usable, recent results decide (protocol 1.1) ----------------------------------


def _no_value(record: Record, when: str, reason: str) -> Record:
    record.resources.append(
        {
            "resourceType": "Observation",
            "id": f"obs-absent-{len(record.resources)}",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "14685-2"}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": when,
            "dataAbsentReason": {"text": reason},
        }
    )
    return record


def test_D9_a_result_with_no_value_is_skipped_for_an_earlier_usable_one() -> None:
    record = _no_value(Record().b12(110, when="2026-08-10"), "2026-11-20", "Haemolysed specimen")
    a = plan(record).assessment
    assert (a.status, a.deficiency_rules) == ("confirmed", ("D2", "D9"))
    [skipped] = a.unusable
    assert skipped.problem == "no value (Haemolysed specimen)"
    assert "unknown unit" not in (skipped.problem or "")
    no_quantity = Record().b12(110, when="2026-08-10").b12(400, when="2026-11-20")
    del no_quantity.resources[-1]["valueQuantity"]
    assert plan(no_quantity).assessment.status == "confirmed"


def test_D9_implausible_values_are_never_a_reason_to_treat() -> None:
    for value in (0, -40, 37000, 120000.0):
        a = plan(Record().b12(value)).assessment
        assert (a.status, a.deficiency_rules) == ("unknown", ("D6", "D9")), value
        assert a.unusable[0].problem == "implausible value"
    as_text = Record().b12(95)
    as_text.resources[-1]["valueQuantity"]["value"] = "95"  # a string is not a JSON number
    a = plan(as_text).assessment
    assert a.status == "unknown" and a.facts.unusable[0].problem == "the value is not a number"
    # It is not valid FHIR R4 either: showing it names the element (the hooks answer 400).
    with pytest.raises(InvalidResourceError, match="valueQuantity.value"):
        _ = a.unusable
    assert plan(Record().b12(36999)).assessment.status == "not-deficient"  # within bounds


def test_D9_results_dated_after_today_are_unusable() -> None:
    a = plan(Record().b12(90, when="2026-12-02")).assessment
    assert a.status == "unknown" and a.unusable[0].problem == "dated after today (2026-12-02)"
    assert plan(Record().b12(90, when="2026-12-01")).assessment.status == "confirmed"
    positive = Record().b12(90).qualitative("31444-3", "Positive", when="2027-01-01")
    assert plan(positive).assessment.type == "unspecified"


def test_D9_a_result_taken_today_in_a_zone_ahead_of_utc_is_not_dated_after_today() -> None:
    # 00:30 on 2 December at +13:00 is 11:30 UTC on 1 December, the day of the answer.
    ahead = plan(Record().b12(90, when="2026-12-02T00:30:00+13:00")).assessment
    assert ahead.status == "confirmed" and not ahead.unusable
    tomorrow = plan(Record().b12(90, when="2026-12-02T13:30:00+13:00")).assessment
    assert tomorrow.unusable and tomorrow.unusable[0].problem.startswith("dated after today")


def test_D9_only_results_within_the_recency_window_decide() -> None:
    within = plan(Record().b12(90, when="2025-12-01")).assessment  # 365 days before START
    assert within.status == "confirmed" and not within.stale
    stale = plan(Record().b12(90, when="2025-11-30")).assessment
    assert (stale.status, stale.deficiency_rules) == ("unknown", ("D6", "D9"))
    assert [r.analyte for r in stale.stale] == ["b12"]
    # An antibody result does not go stale; a recorded diagnosis still confirms.
    old_antibody = Record().b12(90).qualitative("31444-3", "Positive", when="2019-01-01")
    assert plan(old_antibody).assessment.type == "pernicious-anemia"
    with_d1 = plan(Record().condition(ICD, "D51.9").b12(90, when="2024-01-01")).assessment
    assert with_d1.status == "confirmed" and "D9" in with_d1.deficiency_rules


# --- D10: latest results that tie and disagree decide nothing --------------------------------

DRAWN = "2026-11-10T09:00:00Z"


def _b12s(*results: tuple[float, str, str]) -> Record:
    record = Record()
    for value, unit, when in results:
        record.b12(value, unit, when=when)
    return record


def _conflict_card(record: Record) -> dict[str, Any]:
    cards = answer(ENGINE, record.resources, start=START)
    assert not [r for c in cards for r in created(c) if r["resourceType"] == "MedicationRequest"]
    [card] = [c for c in cards if kind(c) == "conflicting-results"]
    return card


def test_D10_latest_results_that_disagree_decide_nothing() -> None:
    summaries = set()
    for values in ((95, 410), (410, 95)):
        record = _b12s(*((v, "pmol/L", DRAWN) for v in values))
        p = plan(record)
        a = p.assessment
        assert (a.status, a.deficiency_rules) == ("unknown", ("D6", "D10"))
        assert p.recommended is None and "b12" not in a.facts.results
        assert [r.shown for r in a.conflicting] == ["95 pmol/L", "410 pmol/L"]
        card = _conflict_card(record)
        assert card["indicator"] == "warning" and "D10" in card["extension"]["rules"]
        for r in a.conflicting:
            assert f"{r.shown} (2026-11-10, `{r.reference}`)" in card["detail"]
        assert [s["label"] for s in card["suggestions"]] == ["Order serum vitamin B12"]
        summaries.add(card["summary"])
    assert summaries == {
        "Serum vitamin B12 (cobalamin) results of 2026-11-10 disagree (95 pmol/L, 410 pmol/L): "
        "repeat the test"
    }


def test_D10_a_date_only_result_ties_with_any_result_of_its_day() -> None:
    for other in ("2026-11-10T15:30:00Z", "2026-11-10T02:00:00+05:00"):
        a = plan(_b12s((95, "pmol/L", "2026-11-10"), (410, "pmol/L", other))).assessment
        assert (a.status, a.deficiency_rules) == ("unknown", ("D6", "D10")), other
    # Two times of the same day are not a tie: the later one decides.
    timed = _b12s((95, "pmol/L", "2026-11-10T08:00:00Z"), (410, "pmol/L", "2026-11-10T15:30:00Z"))
    assert plan(timed).assessment.deficiency_rules == ("D5",)


def test_D10_the_same_value_in_two_units_is_no_conflict() -> None:
    for pair in (
        ((300, "pg/mL"), (221, "pmol/L")),
        ((500, "pg/mL"), (369, "pmol/L")),
        ((0.369, "nmol/L"), (369, "pmol/L")),
    ):
        a = plan(_b12s(*((v, unit, DRAWN) for v, unit in pair))).assessment
        assert not a.conflicting and "D10" not in a.deficiency_rules, pair
        assert a.status in ("indeterminate", "not-deficient"), pair
    # The card shows a converted value beside the one received.
    card = _conflict_card(_b12s((520, "pg/mL", DRAWN), (98, "pmol/L", DRAWN)))
    assert "520 pg/mL (= 384 pmol/L) (2026-11-10" in card["detail"]
    assert "98 pmol/L (2026-11-10" in card["detail"]


def test_D10_a_newer_result_after_a_conflicting_pair_decides_as_before() -> None:
    record = _b12s((95, "pmol/L", DRAWN), (410, "pmol/L", DRAWN), (120, "pmol/L", "2026-11-20"))
    newer = plan(record)
    alone = plan(_b12s((120, "pmol/L", "2026-11-20")))
    assert not newer.assessment.conflicting
    assert newer.assessment.deficiency_rules == alone.assessment.deficiency_rules == ("D2",)
    assert newer.recommended is not None and alone.recommended is not None
    assert newer.recommended.regimen_id == alone.recommended.regimen_id
    cards = answer(ENGINE, record.resources, start=START)
    assert "conflicting-results" not in [kind(c) for c in cards]


def test_D10_an_older_result_does_not_decide_past_a_newer_conflicting_pair() -> None:
    older = (120, "pmol/L", "2026-09-01")
    a = plan(_b12s(older, (95, "pmol/L", DRAWN), (410, "pmol/L", DRAWN))).assessment
    assert (a.status, a.deficiency_rules) == ("unknown", ("D6", "D10"))
    assert [r.shown for r in a.conflicting] == ["95 pmol/L", "410 pmol/L"]
    # A recorded diagnosis still confirms; the disagreeing results are still named.
    record = _b12s(older, (95, "pmol/L", DRAWN), (410, "pmol/L", DRAWN)).condition(ICD, "D51.9")
    with_d1 = plan(record).assessment
    assert with_d1.status == "confirmed" and with_d1.deficiency_rules == ("D1", "D10")


def test_D10_a_positive_and_a_negative_antibody_of_one_time_set_no_type() -> None:
    record = low_b12().qualitative("31444-3", "Positive", when=DRAWN)
    record.qualitative("31444-3", "Negative", when=DRAWN)
    a = plan(record).assessment
    assert (a.type, a.deficiency_rules) == ("unspecified", ("D2", "D10"))
    assert [r.positive for r in a.conflicting] == [False, True]


# --- D8: functional deficiency suspected despite a normal or borderline B12 (protocol 1.1) --


def _nitrous_oxide(record: Record) -> Record:
    record.resources.append(
        {
            "resourceType": "Condition",
            "id": "cond-n2o",
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "active",
                    }
                ]
            },
            "code": {"text": "Recreational nitrous oxide use"},
            "subject": {"reference": "Patient/p1"},
        }
    )
    return record


def test_D8_neurology_or_nitrous_oxide_with_normal_or_borderline_b12() -> None:
    for record in (
        _nitrous_oxide(Record().b12(400)),
        Record().b12(400).condition(ICD, "G32.0"),
        Record().b12(190).condition(SNOMED, "42345000"),
        Record().b12(400).condition(SNOMED, "48522003"),
        Record()
        .b12(400)
        .medication("Entonox (nitrous oxide 50% / oxygen 50%)", kind="MedicationStatement"),
    ):
        a = plan(record).assessment
        assert "D8" in a.deficiency_rules and a.status in ("not-deficient", "indeterminate")
        assert plan(record).recommended is None  # it asks for tests; it does not treat
    assert "D8" not in plan(Record().b12(400)).assessment.deficiency_rules
    # Ruled out by a normal MMA (D3), confirmed by a low B12 (S1 then), or on B12 already.
    ruled_out = Record().b12(180).lab("13964-2", 0.2, "umol/L").condition(SNOMED, "42345000")
    assert "D8" not in plan(ruled_out).assessment.deficiency_rules
    assert "D8" not in plan(_nitrous_oxide(Record().b12(90))).assessment.deficiency_rules
    on_b12 = _nitrous_oxide(Record().b12(400)).medication("cyanocobalamin 1000 mcg tablet")
    assert "D8" not in plan(on_b12).assessment.deficiency_rules


def test_M5_unknown_cause_is_investigated_and_maintenance_does_not_lapse_silently() -> None:
    p = plan(low_b12())
    assert p.assessment.type == "unspecified" and "M5" in p.rule_ids
    [m5] = [m for m in p.monitoring if m.id == "M5"]
    assert (m5.test.system, m5.test.code) == ("loinc", "31444-3")
    series = ENGINE.medication_requests(p)[p.recommended.regimen_id if p.recommended else ""]
    maintenance = series[-1]
    notes = " ".join(n["text"] for n in maintenance["note"])
    assert "continue for life" in notes and "pernicious anaemia" in notes
    assert p.recommended and p.recommended.phases[-1].end is not None  # it does end at review
    assert not any("continue for life" in n["text"] for mr in series[:-1] for n in mr["note"])
    # A known cause needs no such investigation.
    assert "M5" not in plan(low_b12().condition(ICD, "D51.0")).rule_ids
    assert "M5" not in plan(low_b12().allergy("Cobalt")).rule_ids  # no schedule, no M5


# --- NICE active B12: holotranscobalamin settles a borderline B12 in nice-ng239 -------------

HOLOTC = "72160-5"


def test_NICE_active_B12_low_confirms_high_argues_against_in_nice_only() -> None:
    def status(holotc: float, profile: str = "nice-ng239") -> tuple[str, tuple[str, ...]]:
        a = plan(Record().b12(250, "pg/mL").lab(HOLOTC, holotc, "pmol/L"), profile).assessment
        return a.status, a.deficiency_rules

    assert status(24.9) == ("confirmed", ("D3",))
    assert status(25) == ("indeterminate", ("D4",))
    assert status(70) == ("indeterminate", ("D4",))
    assert status(70.1) == ("not-deficient", ("D3",))
    assert status(18, "standard") == ("indeterminate", ("D4",))  # the profile does not read it
    # A raised MMA is functional evidence and still decides first.
    mma = Record().b12(250, "pg/mL").lab(HOLOTC, 95, "pmol/L").lab("13964-2", 0.6, "umol/L")
    assert plan(mma, "nice-ng239").assessment.status == "confirmed"


def test_NICE_active_B12_joins_the_observations_prefetch() -> None:
    from cds_service.hooks.prefetch_templates import PREFETCH

    assert f"http://loinc.org|{HOLOTC}" in PREFETCH["observations"]


# --- Records the code lists do not cover: text, or a code system not listed ----------------

WHO_ICD10 = "http://hl7.org/fhir/sid/icd-10"
CPT = "http://www.ama-assn.org/go/cpt"


def text_only(record: Record, text: str) -> Record:
    """The last resource added, its code given as text alone (as many problem lists send it)."""
    record.resources[-1]["code"] = {"text": text}
    return record


def test_S1_neurological_involvement_recorded_as_text_or_in_an_unlisted_code_system() -> None:
    for record in (
        text_only(low_b12().condition(SNOMED, "x"), "Subacute combined degeneration of the cord"),
        text_only(low_b12().condition(SNOMED, "x"), "Peripheral neuropathy"),
        low_b12().condition(WHO_ICD10, "G62.9", "Polyneuropathy, unspecified"),
        low_b12().condition(ICD, "E11.42", "Type 2 diabetes mellitus with diabetic polyneuropathy"),
    ):
        p = plan(record.medication("metformin 850 mg tablet"))
        assert "S1" in flags(p) and p.assessment.severity == "severe"
        assert p.recommended and {ph.phase.route for ph in p.recommended.phases} == {
            "intramuscular"
        }
    assert "S1" not in flags(plan(text_only(low_b12().condition(SNOMED, "x"), "Neurosis")))


def test_S5_leber_optic_neuropathy_recorded_as_text() -> None:
    for text in ("Leber's hereditary optic neuropathy", "LHON", "Leber\u2019s optic atrophy"):
        p = plan(text_only(low_b12().condition(SNOMED, "x"), text))
        assert "S5" in flags(p) and p.recommended is None, text
    # Leber congenital amaurosis is a retinal dystrophy, not the optic neuropathy.
    amaurosis = text_only(low_b12().condition(SNOMED, "x"), "Leber congenital amaurosis")
    assert "S5" not in flags(plan(amaurosis))


def test_S4_allergy_recorded_under_a_brand_or_with_subscript_digits() -> None:
    for text in ("Neo-Cytamen", "Cyanokit", "Cytamen injection", "Vitamin B\u2081\u2082"):
        p = plan(low_b12().allergy(text))
        assert "S4" in flags(p) and p.recommended is None, text


def test_S2_intravenous_route_written_only_in_the_sig_or_as_i_v() -> None:
    sig = low_b12().medication("cyanocobalamin 1000 mcg/mL injection", status="draft")
    sig.resources[-1]["dosageInstruction"] = [{"text": "1000 mcg IV once"}]
    assert "S2" in flags(plan(sig))
    dotted = low_b12().medication(
        "cyanocobalamin 1000 mcg/mL injection", status="draft", route=("x", "x")
    )
    dotted.resources[-1]["dosageInstruction"][0]["route"] = {"text": "i.v."}
    assert "S2" in flags(plan(dotted))
    im = low_b12().medication("cyanocobalamin 1000 mcg/mL injection", status="draft")
    im.resources[-1]["dosageInstruction"] = [{"text": "1000 mcg IM monthly"}]
    assert "S2" not in flags(plan(im))


def test_T2_pernicious_anaemia_recorded_as_text() -> None:
    for text in ("Pernicious anaemia", "pernicious anemia (autoimmune)"):
        p = plan(text_only(low_b12().condition(SNOMED, "x"), text))
        assert p.assessment.type == "pernicious-anemia", text


def test_T3_surgery_recorded_as_text_or_in_cpt() -> None:
    gastrectomy = text_only(low_b12().procedure("x"), "Total gastrectomy 2019")
    assert [c.id for c in plan(gastrectomy).assessment.causes] == ["gastrectomy"]
    resected = low_b12().procedure("x")
    resected.resources[-1]["code"] = {
        "coding": [
            {
                "system": CPT,
                "code": "44120",
                "display": "Enterectomy, resection of small intestine; single resection",
            }
        ]
    }
    assert [c.id for c in plan(resected).assessment.causes] == ["ileal-resection"]
    appendectomy = plan(text_only(low_b12().procedure("x"), "Appendectomy")).assessment
    assert appendectomy.type != "malabsorption"


def test_S9_pregnancy_recorded_as_text() -> None:
    assert "S9" in flags(plan(text_only(low_b12().condition(SNOMED, "x"), "Pregnant, 20 weeks")))
