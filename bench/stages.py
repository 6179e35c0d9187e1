"""In-process profile: where the time of one hook request goes, stage by stage.

The stages are the ones the HTTP service runs for `POST /cds-services/{id}`
(cds_service/hooks/router.py), called directly, without HTTP, uvicorn or the worker-thread hop:

- parse: `orjson.loads` of the body (orjson also bounds its nesting depth)
- validate: the CDS Hooks envelope and context (`parse_hook_request`, pydantic)
- prefetch: prefetch values -> resource list (`hooks.prefetch.resolve`, no fetcher)
- facts: `engine.extractor.extract`
- assessment: `engine.assessor.assess`
- regimen: `engine.planner.plan`
- fhir_output: `engine.medication_requests` (templated, as the hook route asks them) +
  `CardBuilder.cards`
- serialise: `orjson.dumps` of `{"cards": [...]}`, as the service's response class does

Each stage also shows the part of its time spent in strict R4 validation: the extractor
validates the patient and the conditions it keeps, a lab result is validated when a rule (or a
card) first reads it, so validation falls in `facts`, `assessment` and `fhir_output`.

Beside the stages, the same body goes through the service's whole ASGI app (middleware,
routing, the audit record and its SQLite write, the response), in slices alternating with the
stages' so that the machine's drift meets both alike: the CPU per call of each, and what lies
outside the stages, which no stage profile shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson

from bench import workload

STAGES = (
    "parse",
    "validate",
    "prefetch",
    "facts",
    "assessment",
    "regimen",
    "fhir_output",
    "serialise",
)
#: The stages that run the clinical core, the only ones that can validate FHIR resources.
CORE_STAGES = ("facts", "assessment", "regimen", "fhir_output")


@dataclass(frozen=True)
class StageResult:
    name: str
    mean_us: float
    p50_us: float
    p99_us: float
    share: float
    #: Mean µs of the stage spent in strict R4 validation.
    validation_us: float


def _run_sync(coro: Coroutine[Any, Any, Any]) -> Any:
    """Drive a coroutine that never suspends (resolve without a fetcher) without a loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("the coroutine suspended; it needs an event loop")


@contextmanager
def _timed_validation(spent: list[int]) -> Iterator[None]:
    """Add the ns spent in `extract._validate` (strict R4 validation) to `spent[0]`."""
    from cds_service.clinical import extract

    original = getattr(extract, "_validate", None)
    if original is None:
        yield
        return

    def timed(resource: Any) -> None:
        t = time.perf_counter_ns()
        try:
            original(resource)
        finally:
            spent[0] += time.perf_counter_ns() - t

    extract._validate = timed
    try:
        yield
    finally:
        extract._validate = original


#: Calls per slice when the stages and the whole app alternate.
SLICE = 50


@contextmanager
def _whole_app(hook: str, start: date) -> Iterator[Callable[[bytes, int], float]]:
    """The service's ASGI app as served (audit trail on a throwaway SQLite database), and a
    function that sends it a body `n` times and returns the process CPU seconds spent, the
    audit writes of those calls included."""
    from bench.audit_cost import _drive, _settings
    from cds_service.app import create_app

    settings = _settings(None)
    app = create_app(settings, clock=lambda: start)
    path = f"/cds-services/b12-{hook}"
    loop = asyncio.new_event_loop()
    lifespan = app.router.lifespan_context(app)
    loop.run_until_complete(lifespan.__aenter__())

    async def calls(body: bytes, n: int) -> list[int]:
        statuses = await _drive(app, body, n, 1, path)
        await app.state.cds.store.audit.flush()
        return statuses

    def drive(body: bytes, n: int) -> float:
        cpu = time.process_time()
        statuses = loop.run_until_complete(calls(body, n))
        spent = time.process_time() - cpu
        if any(status != 200 for status in statuses):
            raise RuntimeError(f"the app answered {sorted(set(statuses))}")
        return spent

    try:
        yield drive
    finally:
        loop.run_until_complete(lifespan.__aexit__(None, None, None))
        loop.close()
        shutil.rmtree(settings.data_dir, ignore_errors=True)


def profile(
    n: int = 2000,
    *,
    hook: str = "patient-view",
    start: date = workload.START,
    whole_app: bool = True,
) -> dict[str, Any]:
    """Run one request `n` times (after a few warm-up calls) and time each stage; with
    `whole_app`, also through the whole ASGI app in alternating slices."""
    with _whole_app(hook, start) if whole_app else contextlib.nullcontext() as drive:
        return _profile(n, hook, start, drive)


def _profile(
    n: int, hook: str, start: date, drive: Callable[[bytes, int], float] | None
) -> dict[str, Any]:
    from cds_service import heap
    from cds_service.engine import Engine
    from cds_service.hooks.cards import CardBuilder, HookContext
    from cds_service.hooks.models import parse_hook_request
    from cds_service.hooks.prefetch import resolve

    request = (
        workload.patient_view_request() if hook == "patient-view" else workload.order_sign_request()
    )
    raw = json.dumps(request).encode("utf-8")
    engine = Engine.build()
    cards = CardBuilder(engine.protocol)

    validated = [0]  # ns in strict R4 validation so far (see _timed_validation)
    in_validation = dict.fromkeys(STAGES, 0)  # ns per stage over the measured runs

    def once(samples: dict[str, list[int]] | None) -> int:
        clock = time.perf_counter_ns
        v: list[int] = []
        t0 = clock()
        body = orjson.loads(raw)
        t1 = clock()
        hook_request = parse_hook_request(body, hook)
        t2 = clock()
        record = _run_sync(resolve(hook_request, None))
        t3 = clock()
        v.append(validated[0])
        facts = engine.extractor.extract(
            record.resources, patient_id=record.patient_id, draft_orders=record.draft_orders
        )
        t4 = clock()
        v.append(validated[0])
        assessment = engine.assessor.assess(facts, day=start, profile=None)
        t5 = clock()
        v.append(validated[0])
        plan = engine.planner.plan(assessment, start=start)
        t6 = clock()
        v.append(validated[0])
        ctx = hook_request.context
        series = engine.medication_requests(
            plan,
            requester=ctx.get("userId"),
            encounter=ctx.get("encounterId"),
            authored_on=start,
            templated=True,  # as the hook route asks for them
        )
        hook_ctx = HookContext(
            hook=hook,
            patient_id=record.patient_id,
            user_id=ctx.get("userId"),
            encounter_id=ctx.get("encounterId"),
            draft_orders=record.draft_orders,
            not_checked=tuple(sorted(record.missing)),
            authored_on=start,
        )
        out = cards.cards(plan, series, hook_ctx, new_id=lambda: str(uuid.uuid4()))
        t7 = clock()
        v.append(validated[0])
        payload = orjson.dumps({"cards": out})
        t8 = clock()
        if samples is not None:
            marks = (t0, t1, t2, t3, t4, t5, t6, t7, t8)
            for name, a, b in zip(STAGES, marks, marks[1:], strict=False):
                samples[name].append(b - a)
            for name, a, b in zip(CORE_STAGES, v[:-1], v[1:], strict=True):
                in_validation[name] += b - a
        return len(payload)

    warm = min(50, max(1, n // 10))
    for _ in range(warm):
        response_bytes = once(None)
    if drive is not None:
        drive(raw, warm)
    heap.settle()  # As the service does once it has started.
    samples: dict[str, list[int]] = {name: [] for name in STAGES}
    stages_cpu = app_cpu = wall = 0.0  # the stage loop's CPU and wall seconds; the app's CPU
    with _timed_validation(validated):
        for done in range(0, n, SLICE):
            calls = min(SLICE, n - done)
            cpu, started = time.process_time(), time.perf_counter()
            for _ in range(calls):
                once(samples)
            stages_cpu += time.process_time() - cpu
            wall += time.perf_counter() - started
            if drive is not None:
                app_cpu += drive(raw, calls)

    means = {name: sum(v) / len(v) / 1000 for name, v in samples.items()}
    total = sum(means.values())
    stages = []
    for name in STAGES:
        values = sorted(samples[name])
        stages.append(
            StageResult(
                name=name,
                mean_us=means[name],
                p50_us=values[len(values) // 2] / 1000,
                p99_us=values[min(len(values) - 1, int(len(values) * 0.99))] / 1000,
                share=means[name] / total if total else 0.0,
                validation_us=in_validation[name] / n / 1000,
            ).__dict__
        )
    return {
        "hook": hook,
        "n": n,
        "request_bytes": len(raw),
        "response_bytes": response_bytes,
        "resources": sum(
            len(v.get("entry", [])) if v.get("resourceType") == "Bundle" else 1
            for v in request["prefetch"].values()
        ),
        "stages": stages,
        "total_mean_us": total,
        # FHIR R4 model validation of each resource the rules read, in all stages.
        "fhir_validation_mean_us": sum(in_validation.values()) / n / 1000,
        "wall_s": wall,
        "single_core_rps_limit": 1e6 / total if total else 0.0,
        # CPU per call (process time, so other threads' work counts): the stages in sequence,
        # and the whole app in the slices between them (None without `whole_app`).
        "stages_cpu_us": stages_cpu / n * 1e6,
        "whole_app_cpu_us": app_cpu / n * 1e6 if drive is not None else None,
    }


def format_profile(result: dict[str, Any]) -> str:
    lines = [
        f"In-process profile: {result['hook']}, {result['n']} runs, "
        f"request {result['request_bytes'] / 1024:.1f} KiB ({result['resources']} resources), "
        f"response {result['response_bytes'] / 1024:.1f} KiB",
        "",
        f"| {'stage':<12} | {'mean µs':>9} | {'p50 µs':>9} | {'p99 µs':>9} | {'share':>6} "
        f"| {'of which validation µs':>26} |",
        f"|{'-' * 14}|{'-' * 10}:|{'-' * 10}:|{'-' * 10}:|{'-' * 7}:|{'-' * 27}:|",
    ]
    for s in result["stages"]:
        lines.append(
            f"| {s['name']:<12} | {s['mean_us']:>9.1f} | {s['p50_us']:>9.1f} "
            f"| {s['p99_us']:>9.1f} | {s['share'] * 100:>5.1f}% | {s['validation_us']:>26.1f} |"
        )
    validation = result["fhir_validation_mean_us"]
    total = result["total_mean_us"]
    lines.append(
        f"| {'total':<12} | {total:>9.1f} | {'':>9} | {'':>9} | {100:>5.1f}% "
        f"| {validation:>26.1f} |"
    )
    lines += [
        "",
        "Strict R4 validation (compiled schema) of the resources the rules read: "
        f"{validation / total * 100 if total else 0:.0f}% of the total.",
        f"=> at most {result['single_core_rps_limit']:.0f} requests/s per core for the work "
        "alone (no HTTP).",
    ]
    whole = result.get("whole_app_cpu_us")
    if whole:
        stages = result["stages_cpu_us"]
        lines.append(
            f"CPU per call, alternating slices of {SLICE}: the stages {stages:.0f} µs, the whole "
            f"ASGI app {whole:.0f} µs (middleware, routing, audit, response: "
            f"{whole - stages:.0f} µs, {(whole - stages) / whole * 100:.0f}% of it; no HTTP)."
        )
    return "\n".join(lines)
