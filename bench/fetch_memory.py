"""Peak memory of the service while concurrent calls fill their record by the fallback fetch.

`python -m bench.fetch_memory [--calls 16] [--observations 10000] [--page-size 2000]` starts
the loopback FHIR test server (tests/fhirserver) in a process of its own, holding one patient with
`--observations` full-size haemoglobin results served `--page-size` to a search page, and the
service (one uvicorn worker, auth off, loopback FHIR servers allowed). It sends `--calls`
patient-view calls at once that carry every prefetch key but `observations`, so each call
fetches the whole history (up to CDS_FHIR_MAX_PAGES pages), and prints the answers' statuses,
the 412 reasons and the service's peak RSS (VmHWM, the largest of its processes).

It does this twice, each time with a fresh service: with the memory budget out of the way
(CDS_FHIR_MAX_BYTES_PER_CALL and _TOTAL at 4 GiB: the service as it was before it had one) and
with the budget at its defaults (16 MB a call, 64 MB for the process), or at `--per-call` and
`--total` when given. Timeouts are raised so that memory, not time, decides which calls fail.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import multiprocessing
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.server import Server
from cds_service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
REQUEST = ROOT / "fhir_examples" / "requests" / "t6-unspecified-low-b12.patient-view.json"
UNBOUNDED = 4 * 1024**3


def _serve_fhir(observations: int, page_size: int, base_url: Any, stop: Any) -> None:
    """The loopback FHIR test server (tests/fhirserver) with the patient, in its own process
    so that serving 2 MB pages shares neither the GIL of the client nor of the service."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fhirserver import FhirTestServer

    request = json.loads(REQUEST.read_text())
    server = FhirTestServer([patient_bundle(request, observations)], page_size=page_size)
    server.start()
    base_url.put(server.base_url)
    stop.wait()
    server.stop()


def patient_bundle(request: dict[str, Any], observations: int) -> dict[str, Any]:
    """The request's record as a FHIR server holds it, its haemoglobin repeated `observations`
    times over the years before (the same full-size resource an EHR sends)."""
    resources = [request["prefetch"]["patient"]]
    for value in request["prefetch"].values():
        if isinstance(value, dict) and value.get("resourceType") == "Bundle":
            resources += [e["resource"] for e in value.get("entry", [])]
    hb = next(r for r in resources if "718-7" in json.dumps(r.get("code", {})))
    history = []
    for i in range(observations - sum(r["resourceType"] == "Observation" for r in resources)):
        result = copy.deepcopy(hb)
        result["id"] = f"hb-history-{i}"
        result["effectiveDateTime"] = f"{2025 - i // 365:04d}-{1 + i % 12:02d}-{1 + i % 28:02d}"
        history.append(result)
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in resources + history],
    }


def fetching_call(request: dict[str, Any], fhir_base: str) -> dict[str, Any]:
    body = copy.deepcopy(request)
    del body["prefetch"]["observations"]
    body["fhirServer"] = fhir_base
    return body


async def _calls(base: str, body: dict[str, Any], calls: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base, timeout=600) as http:
        return await asyncio.gather(
            *(http.post("/cds-services/b12-patient-view", json=body) for _ in range(calls))
        )


def measure(name: str, env: dict[str, str], body: dict[str, Any], calls: int) -> None:
    service = Server(
        "service",
        "cds_service.app:app",
        env={
            "CDS_AUTH": "off",
            "CDS_FHIR_TIMEOUT_S": "300",
            "CDS_FHIR_DEADLINE_S": "300",
            **env,
        },
    )
    service.start(timeout_s=90)
    try:
        idle = service.peak_rss_mb() or 0.0
        began = time.perf_counter()
        responses = asyncio.run(_calls(service.base_url, body, calls))
        seconds = time.perf_counter() - began
        peak = service.peak_rss_mb() or 0.0
    finally:
        service.stop()
    statuses = Counter(r.status_code for r in responses)
    reasons = Counter(
        reason
        for r in responses
        if r.status_code == 412
        for reason in r.json()["error"]["reasons"].values()
    )
    print(
        f"{name}: {calls} calls in {seconds:.1f} s, statuses "
        f"{dict(sorted(statuses.items()))}; peak RSS {peak:.0f} MB (idle {idle:.0f} MB)"
    )
    for reason, count in reasons.most_common():
        print(f"    412 x{count}: {reason}")


def main() -> int:
    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=16)
    parser.add_argument("--observations", type=int, default=10_000)
    parser.add_argument("--page-size", type=int, default=2000)
    parser.add_argument("--per-call", type=int, default=defaults.fhir_max_bytes_per_call)
    parser.add_argument("--total", type=int, default=defaults.fhir_max_bytes_total)
    args = parser.parse_args()
    request = json.loads(REQUEST.read_text())
    spawn = multiprocessing.get_context("spawn")
    base_url, stop = spawn.Queue(), spawn.Event()
    fhir = spawn.Process(
        target=_serve_fhir, args=(args.observations, args.page_size, base_url, stop), daemon=True
    )
    fhir.start()
    try:
        fhir_base = base_url.get(timeout=120)
        body = fetching_call(request, fhir_base)
        with httpx.Client(timeout=60) as http:
            page = http.get(f"{fhir_base}/Observation", params={"patient": "b12gp-017"})
        print(
            f"FHIR server: {args.observations} observations, {args.page_size} a page "
            f"({len(page.content) / 1e6:.1f} MB a page)"
        )
        measure(
            "no budget (before)",
            {
                "CDS_FHIR_MAX_BYTES_PER_CALL": str(UNBOUNDED),
                "CDS_FHIR_MAX_BYTES_TOTAL": str(UNBOUNDED),
            },
            body,
            args.calls,
        )
        measure(
            f"budget {args.per_call / 2**20:g} MB a call, {args.total / 2**20:g} MB in all",
            {
                "CDS_FHIR_MAX_BYTES_PER_CALL": str(args.per_call),
                "CDS_FHIR_MAX_BYTES_TOTAL": str(args.total),
            },
            body,
            args.calls,
        )
    finally:
        stop.set()
        fhir.join(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
