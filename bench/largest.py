"""/health latency while the largest requests the service accepts are being answered.

`python -m bench.largest [--rounds N]` starts the service (one uvicorn worker, auth off), then
for each case sends the request N times one after the other while another connection asks
`/health` every 10 ms, and prints the request time and the /health latency (p50, p99, max);
then N more times without /health, to print the CPU the serving process (not its reading
process) spends a call. `CDS_READ_PROCESSES=0 python -m bench.largest` measures large bodies
read in a thread of the worker instead.

Cases, each at the documented caps: a 5 MB body of full-size observations (CDS_MAX_BODY_BYTES);
20,000 small resources, 10,000 in one key (CDS_MAX_RESOURCES, CDS_MAX_ENTRIES_PER_KEY); 200
draft B12 orders (CDS_MAX_DRAFT_ORDERS); a 5 MB `$apply` body, its `data` Bundle of full-size
observations; a patient-view call whose observations the fallback fetch gets from the loopback
FHIR test server (tests/fhirserver, in a process of its own) as one search page of 10,000
full-size results (CDS_MAX_ENTRIES_PER_KEY; under the 16 MB of CDS_FHIR_MAX_BYTES and
CDS_FHIR_MAX_BYTES_PER_CALL).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import multiprocessing
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.fetch_memory import _serve_fhir, fetching_call
from bench.server import Server, proc_cpu_s
from cds_service.fetch.client import DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES
from cds_service.settings import DEFAULT_MAX_BODY_BYTES

ROOT = Path(__file__).resolve().parents[1]
REQUESTS = ROOT / "fhir_examples" / "requests"


def _request(name: str) -> dict[str, Any]:
    return json.loads((REQUESTS / name).read_text())


def _observation(body: dict[str, Any], loinc: str) -> dict[str, Any]:
    return next(
        e for e in body["prefetch"]["observations"]["entry"] if loinc in json.dumps(e["resource"])
    )


def full_size_body() -> bytes:
    """As many full-size haemoglobin results as fit under the body cap, then the real ones."""
    body = _request("t6-unspecified-low-b12.patient-view.json")
    own = body["prefetch"]["observations"]["entry"]
    hb = _observation(body, "718-7")
    size = len(orjson.dumps(hb)) + 1
    room = DEFAULT_MAX_BODY_BYTES - len(orjson.dumps(body)) - 1024
    extra = []
    for i in range(room // size):
        entry = copy.deepcopy(hb)
        entry["resource"]["id"] = f"hb-{i}"
        extra.append(entry)
    body["prefetch"]["observations"]["entry"] = extra + own
    return orjson.dumps(body)


def many_resources_body() -> bytes:
    """10,000 minimal observations and 9,990 minimal conditions."""
    body = _request("t6-unspecified-low-b12.patient-view.json")
    own = body["prefetch"]["observations"]["entry"]
    subject = {"reference": "Patient/b12gp-017"}
    obs = [
        {
            "resource": {
                "resourceType": "Observation",
                "id": f"o{i}",
                "status": "final",
                "subject": subject,
                "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
                "effectiveDateTime": "2020-01-01",
                "valueQuantity": {"value": 13.0, "unit": "g/dL"},
            }
        }
        for i in range(10_000 - len(own))
    ]
    conditions = [
        {
            "resource": {
                "resourceType": "Condition",
                "id": f"c{i}",
                "subject": subject,
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]},
            }
        }
        for i in range(9_990 - len(body["prefetch"]["conditions"].get("entry", [])))
    ]
    body["prefetch"]["observations"]["entry"] = obs + own
    body["prefetch"]["conditions"].setdefault("entry", []).extend(conditions)
    return orjson.dumps(body)


def many_drafts_body() -> bytes:
    body = _request("s2-draft-iv-cyanocobalamin.order-sign.json")
    draft = body["context"]["draftOrders"]["entry"][0]
    entries = []
    for i in range(200):
        entry = copy.deepcopy(draft)
        entry["resource"]["id"] = f"draft-{i}"
        entries.append(entry)
    body["context"]["draftOrders"]["entry"] = entries
    return orjson.dumps(body)


def apply_body() -> bytes:
    """A Parameters whose `data` Bundle is the record of `full_size_body`, more full-size
    haemoglobin results added up to the body cap."""
    request = orjson.loads(full_size_body())
    resources = [request["prefetch"]["patient"]]
    for value in request["prefetch"].values():
        if isinstance(value, dict) and value.get("resourceType") == "Bundle":
            resources += [e["resource"] for e in value.get("entry", [])]

    def body() -> bytes:
        return orjson.dumps(
            {
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "subject", "valueString": f"Patient/{resources[0]['id']}"},
                    {
                        "name": "data",
                        "resource": {
                            "resourceType": "Bundle",
                            "type": "collection",
                            "entry": [{"resource": r} for r in resources],
                        },
                    },
                ],
            }
        )

    hb = resources[1]
    one = len(orjson.dumps({"resource": hb})) + 1
    for i in range((DEFAULT_MAX_BODY_BYTES - len(body())) // one):
        resources.append({**hb, "id": f"hb-more-{i}"})
    return body()


PV = "/cds-services/b12-patient-view"
APPLY = "/fhir/PlanDefinition/b12-deficiency-standard/$apply"
#: name -> (path, content type, body); the fetch case's body is made once the FHIR server runs.
CASES: dict[str, tuple[str, str, Callable[[], bytes]]] = {
    "5 MB of full-size observations (patient-view)": (PV, "application/json", full_size_body),
    "20,000 small resources (patient-view)": (PV, "application/json", many_resources_body),
    "200 draft orders (order-sign)": (
        "/cds-services/b12-order-sign",
        "application/json",
        many_drafts_body,
    ),
    "5 MB $apply body, data Bundle of full-size observations": (
        APPLY,
        "application/fhir+json",
        apply_body,
    ),
}
FETCH_CASE = f"fallback fetch: {DEFAULT_MAX_ENTRIES:,} full-size observations in one page"


async def _poll_health(base: str, stop: asyncio.Event, latencies: list[float]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        while not stop.is_set():
            began = time.perf_counter()
            response = await http.get("/health")
            latencies.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 200
            await asyncio.sleep(0.01)


async def measure(
    base: str, path: str, content_type: str, body: bytes, rounds: int, pid: int
) -> dict[str, Any]:
    stop = asyncio.Event()
    health: list[float] = []
    durations: list[float] = []
    statuses: set[int] = set()
    poller = asyncio.create_task(_poll_health(base, stop, health))
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        await asyncio.sleep(0.2)
        for _ in range(rounds):
            began = time.perf_counter()
            response = await http.post(path, content=body, headers={"content-type": content_type})
            durations.append((time.perf_counter() - began) * 1000)
            statuses.add(response.status_code)
        stop.set()
        await poller
        # CPU of the serving process alone (not its reading process), /health not polled: what
        # the event loop's process computes per call, which the machine's load does not change.
        cpu_before = proc_cpu_s(pid) or 0.0
        for _ in range(rounds):
            await http.post(path, content=body, headers={"content-type": content_type})
        cpu_ms = ((proc_cpu_s(pid) or 0.0) - cpu_before) * 1000 / rounds
    health.sort()
    return {
        "bytes": len(body),
        "status": sorted(statuses),
        "request_ms_median": sorted(durations)[len(durations) // 2],
        "health_n": len(health),
        "health_p50_ms": health[len(health) // 2],
        "health_p99_ms": health[min(len(health) - 1, int(len(health) * 0.99))],
        "health_max_ms": health[-1],
        "serving_cpu_ms": cpu_ms,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    bodies = {name: (path, kind, build()) for name, (path, kind, build) in CASES.items()}
    spawn = multiprocessing.get_context("spawn")
    fhir_base, stop = spawn.Queue(), spawn.Event()
    request = json.loads((REQUESTS / "t6-unspecified-low-b12.patient-view.json").read_text())
    fhir = spawn.Process(
        target=_serve_fhir,
        args=(DEFAULT_MAX_ENTRIES, DEFAULT_MAX_ENTRIES, fhir_base, stop),
        daemon=True,
    )
    fhir.start()
    server = Server("service", "cds_service.app:app", env={"CDS_AUTH": "off"})
    try:
        base = fhir_base.get(timeout=120)
        page = httpx.get(f"{base}/Observation", params={"patient": "b12gp-017"}, timeout=60)
        assert len(page.content) < DEFAULT_MAX_BYTES, "the page is past CDS_FHIR_MAX_BYTES"
        print(f"FHIR server: one observations page of {len(page.content) / 1e6:.1f} MB")
        fetching = orjson.dumps(fetching_call(request, base))
        bodies[FETCH_CASE] = (PV, "application/json", fetching)
        # A busy machine may take more than the default 20 s to start the worker and its reader.
        server.start(timeout_s=90)
        for name, (path, kind, body) in bodies.items():
            result = asyncio.run(
                measure(server.base_url, path, kind, body, args.rounds, server.pid)
            )
            print(
                f"{name}: {result['bytes'] / 1e6:.2f} MB, status {result['status']}, request "
                f"{result['request_ms_median']:.0f} ms (median); /health over "
                f"{result['health_n']} probes: p50 {result['health_p50_ms']:.1f} ms, "
                f"p99 {result['health_p99_ms']:.1f} ms, max {result['health_max_ms']:.1f} ms; "
                f"serving process CPU {result['serving_cpu_ms']:.0f} ms a call"
            )
    finally:
        server.stop()
        stop.set()
        fhir.join(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
