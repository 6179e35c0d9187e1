"""The benchmark's in-process parts: the workload, the stage profile, the floor app (no servers).

The HTTP smoke run is `python -m bench --smoke` (CI calls it); it starts servers and processes,
which does not belong in the unit tests.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    # `bench/` sits next to `cds_service/` but is not an installed package.
    sys.path.insert(0, str(ROOT))

from bench import workload  # noqa: E402
from bench.load import Tally, percentile, window_medians  # noqa: E402
from bench.stages import STAGES, format_profile, profile  # noqa: E402

EXPECTED_STAGES = (
    "parse",
    "validate",
    "prefetch",
    "facts",
    "assessment",
    "regimen",
    "fhir_output",
    "serialise",
)


def test_profile_stages_are_named_and_timed() -> None:
    result = profile(20)
    assert STAGES == EXPECTED_STAGES
    assert [s["name"] for s in result["stages"]] == list(EXPECTED_STAGES)
    for stage in result["stages"]:
        assert stage["mean_us"] > 0, stage
        assert stage["p99_us"] >= stage["p50_us"] > 0, stage
    assert abs(sum(s["share"] for s in result["stages"]) - 1.0) < 1e-6
    validation = {s["name"]: s["validation_us"] for s in result["stages"]}
    # The patient and conditions are validated while extracting, lab results as rules read them.
    assert validation["facts"] > 0 and validation["assessment"] > 0
    assert validation["parse"] == validation["serialise"] == 0
    assert abs(sum(validation.values()) - result["fhir_validation_mean_us"]) < 1e-6
    assert result["total_mean_us"] > 0
    assert result["response_bytes"] > 0
    table = format_profile(result)
    for name in EXPECTED_STAGES:
        assert f"| {name} " in table
    # The same body through the whole ASGI app, in the slices between the stages'.
    assert result["stages_cpu_us"] > 0 and result["whole_app_cpu_us"] > 0
    assert "the whole ASGI app" in table


def test_profile_order_sign() -> None:
    result = profile(5, hook="order-sign", whole_app=False)
    assert [s["name"] for s in result["stages"]] == list(EXPECTED_STAGES)
    assert all(s["mean_us"] > 0 for s in result["stages"])
    assert result["whole_app_cpu_us"] is None
    assert "the whole ASGI app" not in format_profile(result)


def test_workload_is_deterministic_and_sized_as_specified() -> None:
    first = json.dumps(workload.patient_view_request(), sort_keys=True)
    assert first == json.dumps(workload.patient_view_request(), sort_keys=True)
    assert len(workload.observations()) == 40
    assert len(workload.conditions()) == 8
    dates = sorted(o["effectiveDateTime"] for o in workload.observations())
    assert dates[-1] == workload.ANCHOR.isoformat()
    assert dates[0] <= (workload.ANCHOR.replace(year=workload.ANCHOR.year - 2)).isoformat()
    drafts = workload.order_sign_request()["context"]["draftOrders"]["entry"]
    assert [d["resource"]["status"] for d in drafts] == ["draft", "draft"]


def test_workload_uses_the_protocol_codes() -> None:
    from cds_service.protocol import default_protocol

    protocol = default_protocol()
    known = {c.code for a in protocol.observations.analytes.values() for c in a.codes}
    used = {c["code"] for o in workload.observations() for c in o["code"].get("coding", [])}
    assert {"14685-2", "13964-2", "2284-8", "718-7", "2823-3"} <= used & known
    assert any("coding" not in o["code"] for o in workload.observations())


def test_prefetch_keys_match_the_service() -> None:
    from cds_service.hooks.prefetch_templates import PREFETCH

    assert set(workload.prefetch()) == set(PREFETCH)


def test_percentile() -> None:
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0


def test_window_medians_take_each_slice_in_time_order() -> None:
    starts = [0.1, 0.2, 0.3, 0.6, 0.7, 1.2]
    latencies = [1.0, 3.0, 2.0, 10.0, 20.0, 5.0]
    assert window_medians(starts, latencies, 0.5) == [2.0, 10.0, 5.0]
    assert window_medians([], [], 0.5) == []


def test_tally_keeps_the_start_of_each_counted_request() -> None:
    tally = Tally(measure_from=10.0, measure_to=20.0)
    tally.add(9.5, 10.2, 200)  # started during the warmup: not counted
    tally.add(10.25, 10.5, 200)
    tally.add(19.0, 20.5, 200)  # ended after the measured time: not counted
    assert tally.starts == [0.25]
    assert tally.latencies == [0.25]
    assert tally.warmup_statuses == {200: 2}


def _latest(analyte_code: str, request: dict[str, Any]) -> dict[str, Any]:
    entries = request["prefetch"]["observations"]["entry"]
    coded = [
        e["resource"]
        for e in entries
        if any(c["code"] == analyte_code for c in e["resource"]["code"].get("coding", []))
    ]
    return max(coded, key=lambda o: str(o["effectiveDateTime"]))


def test_floor_app_validates_what_the_rules_read_and_nothing_else() -> None:
    from fastapi.testclient import TestClient

    from bench.floor import app

    client = TestClient(app)
    path = "/cds-services/b12-patient-view"
    assert client.post(path, json=workload.patient_view_request()).status_code == 200

    # The latest B12 result is read by the rules: an invalid one must be refused.
    invalid_read = workload.patient_view_request()
    _latest("14685-2", invalid_read)["valueQuantity"]["value"] = "low"
    assert client.post(path, json=invalid_read).status_code == 400

    # An older B12 result is not read, so it is not validated (as in the service).
    invalid_unread = workload.patient_view_request()
    latest = _latest("14685-2", invalid_unread)
    older = next(
        e["resource"]
        for e in invalid_unread["prefetch"]["observations"]["entry"]
        if e["resource"]["code"] == latest["code"] and e["resource"] is not latest
    )
    older["valueQuantity"]["value"] = "low"
    assert client.post(path, json=invalid_unread).status_code == 200


def test_the_workload_validates_the_results_its_rules_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's profile figures rest on this: B12 is clearly low, so MMA and homocysteine
    are present but no rule reads them, and they are not validated."""
    from cds_service.clinical import extract
    from cds_service.engine import Engine, bundle_resources

    validated: list[str] = []
    original = extract._validate

    def spy(resource: Any) -> None:
        validated.append(extract.resource_reference(resource))
        original(resource)

    monkeypatch.setattr(extract, "_validate", spy)
    engine = Engine.build()
    prefetch = workload.patient_view_request()["prefetch"]
    resources = [r for v in prefetch.values() for r in bundle_resources(v)]
    facts = engine.extractor.extract([prefetch["patient"], *resources])
    engine.assessor.assess(facts, day=workload.START)
    assert sorted(facts.results) == [
        "b12", "folate", "hemoglobin", "homocysteine", "mma", "potassium"
    ]  # fmt: skip
    read = list(validated)
    expected = {facts.results[a].reference for a in ("b12", "folate", "hemoglobin", "potassium")}
    assert sorted(r for r in read if r.startswith("Observation/")) == sorted(expected)
    kinds = [r.split("/")[0] for r in read]
    assert [kinds.count(k) for k in ("Patient", "Condition", "Observation")] == [1, 1, 4]


def test_audit_cost_measures_both_apps_and_audits_every_answer() -> None:
    import asyncio

    from bench.audit_cost import format_result, measure, problems

    result = asyncio.run(measure(rounds=2, n=4, concurrency=2, warmup=2))
    assert problems(result) == []
    assert result["audited"] == result["expected_audited"] == 8
    assert [r["order"] for r in result["rounds"]] == ["off,on", "on,off"]
    for r in result["rounds"]:
        assert r["off_cpu_ms"] > 0 and r["on_cpu_ms"] > 0
    assert "Throughput cost of the audit" in format_result(result)
