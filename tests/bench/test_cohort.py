"""The benchmark's distinct-patient workload (bench/cohort.py): deterministic, distinct people,
sizes of real records, sandbox-shaped sequences the service answers, a load generator that
goes through them."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import cohort  # noqa: E402
from bench.load import Spec, calls_of, rotation  # noqa: E402

pytestmark = pytest.mark.anyio


def _bytes(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def test_the_cohort_is_the_same_on_every_run() -> None:
    first = [_bytes(b) for _, b in cohort.requests(7)]
    assert first == [_bytes(b) for _, b in cohort.requests(7)]


def test_two_hundred_distinct_patients_each_asked_view_select_sign() -> None:
    requests = list(cohort.cohort())
    assert cohort.DEFAULT_SIZE >= 200
    assert len(requests) == 3 * cohort.DEFAULT_SIZE
    hooks = [b["hook"] for _, b in requests]
    assert hooks[:3] == ["patient-view", "order-select", "order-sign"]
    assert Counter(hooks) == dict.fromkeys(("patient-view", "order-select", "order-sign"), 225)
    patients = [b["context"]["patientId"] for _, b in requests if b["hook"] == "patient-view"]
    assert len(set(patients)) == cohort.DEFAULT_SIZE
    views = [_bytes(b) for _, b in requests if b["hook"] == "patient-view"]
    assert len(set(views)) == cohort.DEFAULT_SIZE  # no two bodies alike
    # Patients made from the same golden patient differ in their values and dates, not only ids.
    a, b = (cohort.patient_record(i)[1] for i in (0, len(cohort.golden_slugs())))
    strip = {"id", "reference", "fullUrl", "name", "family"}

    def shape(resources: list[dict[str, Any]]) -> str:
        return json.dumps(
            [{k: v for k, v in r.items() if k not in strip} for r in resources], sort_keys=True
        ).replace("cohort-", "")

    assert shape(a) != shape(b)


def test_sizes_are_those_of_real_records() -> None:
    sizes = sorted(len(_bytes(b)) for _, b in cohort.cohort() if b["hook"] == "patient-view")
    median = sizes[len(sizes) // 2]
    assert 8_000 <= median <= 40_000, median
    assert sizes[-1] > 2 * sizes[0]


def test_requests_have_the_sandbox_shape() -> None:
    view, select, sign = (b for _, b in cohort.requests(3))
    for body in (view, select, sign):
        assert set(body) == {"hookInstance", "hook", "fhirServer", "context", "prefetch"}
        page = body["prefetch"]["observations"]
        assert page["type"] == "searchset"
        assert [link["relation"] for link in page["link"]] == ["self"]
        assert all(e["search"] == {"mode": "match"} for e in page["entry"])
    assert "draftOrders" not in view["context"]
    drafts = select["context"]["draftOrders"]
    assert "type" not in drafts  # the sandbox sends its Bundle without one
    first = drafts["entry"][0]["resource"]
    assert select["context"]["selections"] == [f"{first['resourceType']}/{first['id']}"]
    assert sign["context"]["draftOrders"] == drafts
    assert len({b["hookInstance"] for b in (view, select, sign)}) == 3


def test_prefetch_holds_what_the_templates_ask_for() -> None:
    from cds_service.hooks.prefetch_templates import PREFETCH

    for i in range(len(cohort.golden_slugs())):
        body = cohort.requests(i)[0][1]
        assert set(body["prefetch"]) == set(PREFETCH)
        for entry in body["prefetch"]["medicationRequests"]["entry"]:
            assert entry["resource"]["status"] in ("active", "on-hold")
        for entry in body["prefetch"]["conditions"]["entry"]:
            code = entry["resource"]["clinicalStatus"]["coding"][0]["code"]
            assert code in ("active", "recurrence", "relapse")


async def test_the_service_answers_every_golden_patient_s_sequence() -> None:
    """One cohort patient per golden patient: every request of the sequence answers 200 (as
    the bench runs it: authentication off)."""
    from hooks.helpers import START, AppClient
    from support import isolated_settings

    from cds_service.app import create_app

    slugs = cohort.golden_slugs()
    app = create_app(isolated_settings(auth=False), clock=lambda: START)
    async with AppClient(app, base_url="http://testserver") as c:
        for i in range(len(slugs)):
            for service, body in cohort.requests(i, slugs):
                r = await c.post(f"/cds-services/{service}", json=body)
                assert r.status_code == 200, (slugs[i], service, r.text[:300])


def test_load_generator_goes_through_the_requests_in_turn(tmp_path: Path) -> None:
    rows = [{"method": "POST", "path": f"/p{i}", "body": "{}"} for i in range(6)]
    file = tmp_path / "requests.jsonl"
    file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = Spec("127.0.0.1", 1, "POST", "/", None, 2, 1.0, 0.0, requests_file=str(file))
    calls = calls_of(spec)
    assert [c.path for c in calls] == [f"/p{i}" for i in range(6)]
    first = [c.path for _, c in zip(range(7), rotation(calls, 0, 2), strict=False)]
    second = [c.path for _, c in zip(range(4), rotation(calls, 1, 2), strict=False)]
    assert first == ["/p0", "/p1", "/p2", "/p3", "/p4", "/p5", "/p0"]
    assert second == ["/p3", "/p4", "/p5", "/p0"]
