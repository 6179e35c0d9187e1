"""What the audit trail costs patient-view: the service with its audit write on and off, side by
side in one process, in finely interleaved slices.

Two apps are built with `create_app` on fresh SQLite databases (or `CDS_DATABASE_URL`); in the
"off" app the answer's audit step (`ServiceState.audit`: building the GuidanceResponse and
queueing it) does nothing. Both drive the same patient-view body through the whole ASGI stack
(middleware, router, engine, cards, response) with `concurrency` calls in flight. A round gives
each app `n` calls in slices of `slice_calls`, the two taking turns slice by slice (which goes
first alternates), and the "on" app is timed until its write-behind queue is empty at the end of
each of its slices, so its batch inserts and commits are inside its figure.

Why slices: on a shared virtual machine the CPU time of the same work drifts by a factor of up
to two over a few seconds (neighbours, frequency, steal), which whole rounds of one app and then
the other turn into a per-round cost anywhere between -10% and +40%. Slices of about a tenth of a
second put both apps under the same conditions. Flushing at the end of each slice makes the
"on" app's batches no larger than a slice: if anything, that overstates the write's share.

The figure is CPU time of this process per answer (`time.process_time`: every thread, the
SQLite writer's included), which other processes disturb much less than wall time; wall time is
reported too. Throughput cost = 1 - off/on: the share of patient-view answers per CPU-second
that the audit takes away (target <= 10%). Without HTTP the denominator is smaller than a
server's, so the share is, if anything, larger than under `python -m bench`. Left in the "off"
app: the router's `Answer` (a uuid, the time, the URL: a few µs), the audit's only work there.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import date
from functools import partial
from typing import Any

import orjson

from bench import workload
from bench.same_answers import answer

PATH = "/cds-services/b12-patient-view"
#: The throughput the audit may take from patient-view.
TARGET_COST = 0.10


@dataclass(frozen=True)
class Round:
    order: str
    off_cpu_ms: float
    on_cpu_ms: float
    off_wall_ms: float
    on_wall_ms: float

    @property
    def cost(self) -> float:
        """Share of throughput (answers per CPU-second) lost to the audit."""
        return 1 - self.off_cpu_ms / self.on_cpu_ms

    @property
    def wall_cost(self) -> float:
        return 1 - self.off_wall_ms / self.on_wall_ms


async def _call(app: Any, body: bytes, path: str = PATH) -> int:
    """One request through the app's whole ASGI stack; its HTTP status."""
    status, _ = await answer(app, path, body)
    return status


async def _drive(app: Any, body: bytes, n: int, concurrency: int, path: str = PATH) -> list[int]:
    """`n` calls with `concurrency` in flight (a closed loop of that many clients)."""
    statuses: list[int] = []
    left = n

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            statuses.append(await _call(app, body, path))

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return statuses


async def _timed(step: Callable[[], Awaitable[Any]], n: int) -> tuple[float, float]:
    """CPU and wall milliseconds per call of `step()` (which makes `n` calls; 1: its total)."""
    cpu, wall = time.process_time(), time.perf_counter()
    await step()
    return (time.process_time() - cpu) * 1000 / n, (time.perf_counter() - wall) * 1000 / n


def _settings(database_url: str | None) -> Any:
    from cds_service.settings import Settings

    values: dict[str, Any] = {"auth": False}
    if database_url:
        values["database_url"] = database_url
    else:
        values["data_dir"] = tempfile.mkdtemp(prefix="b12-cds-audit-cost-")
    return Settings(**values)


async def no_audit(*_args: Any, **_kwargs: Any) -> None:
    """What `ServiceState.audit` becomes in the unaudited arm (here and bench/audit_off.py)."""
    return None


async def _audited_count(app: Any) -> int:
    from sqlalchemy import func, select

    from cds_service.store.tables import guidance_response

    async with app.state.cds.store.database().connect() as connection:
        return int(
            (
                await connection.execute(select(func.count()).select_from(guidance_response))
            ).scalar_one()
        )


async def measure(
    *,
    rounds: int,
    n: int,
    concurrency: int,
    warmup: int,
    slice_calls: int = 50,
    database_url: str | None = None,
    on_round: Callable[[int, Round], None] | None = None,
) -> dict[str, Any]:
    from cds_service.app import create_app

    body = orjson.dumps(workload.patient_view_request())
    today: Callable[[], date] = lambda: workload.START  # noqa: E731
    settings = [_settings(database_url), _settings(database_url)]
    on, off = (create_app(each, clock=today) for each in settings)
    off.state.cds.audit = no_audit
    audit = on.state.cds.store.audit
    results: list[Round] = []
    bad: list[int] = []
    async with AsyncExitStack() as stack:
        if database_url is None:
            for each in settings:  # the throwaway SQLite directories, once both apps stop
                stack.callback(shutil.rmtree, each.data_dir, True)
        for app in (on, off):
            await stack.enter_async_context(app.router.lifespan_context(app))
        for app in (on, off):
            bad += [s for s in await _drive(app, body, warmup, concurrency) if s != 200]
        await audit.flush()
        before = await _audited_count(on)

        async def run_on(calls: int) -> None:
            bad.extend(s for s in await _drive(on, body, calls, concurrency) if s != 200)
            await audit.flush()  # the writes belong to the answers that queued them

        async def run_off(calls: int) -> None:
            bad.extend(s for s in await _drive(off, body, calls, concurrency) if s != 200)

        for i in range(rounds):
            # CPU and wall milliseconds of each app over the round.
            spent = {run_off: [0.0, 0.0], run_on: [0.0, 0.0]}
            done = 0
            while done < n:
                calls = min(slice_calls, n - done)
                first_off = (i + done // slice_calls) % 2 == 0
                for run in (run_off, run_on) if first_off else (run_on, run_off):
                    cpu, wall = await _timed(partial(run, calls), 1)
                    spent[run][0] += cpu
                    spent[run][1] += wall
                done += calls
            off_cpu, off_wall = (v / n for v in spent[run_off])
            on_cpu, on_wall = (v / n for v in spent[run_on])
            result = Round("off,on" if i % 2 == 0 else "on,off", off_cpu, on_cpu, off_wall, on_wall)
            results.append(result)
            if on_round is not None:
                on_round(i, result)
        audited = await _audited_count(on) - before
    costs = [r.cost for r in results]
    wall_costs = [r.wall_cost for r in results]
    return {
        "rounds": [
            {
                "order": r.order,
                "off_cpu_ms": r.off_cpu_ms,
                "on_cpu_ms": r.on_cpu_ms,
                "off_wall_ms": r.off_wall_ms,
                "on_wall_ms": r.on_wall_ms,
                "cost": r.cost,
                "wall_cost": r.wall_cost,
            }
            for r in results
        ],
        "settings": {
            "rounds": rounds,
            "calls_per_round": n,
            "calls_per_slice": slice_calls,
            "concurrency": concurrency,
            "warmup": warmup,
            "database": "CDS_DATABASE_URL" if database_url else "SQLite (CDS_DATA_DIR)",
            "request_bytes": len(body),
        },
        "cost_median": statistics.median(costs),
        "cost_min": min(costs),
        "cost_max": max(costs),
        "wall_cost_median": statistics.median(wall_costs),
        "off_cpu_ms_median": statistics.median(r.off_cpu_ms for r in results),
        "on_cpu_ms_median": statistics.median(r.on_cpu_ms for r in results),
        "target": TARGET_COST,
        "met": statistics.median(costs) <= TARGET_COST,
        "audited": audited,
        "expected_audited": rounds * n,
        "non_200": len(bad),
    }


def round_line(i: int, r: Round) -> str:
    return (
        f"| {i + 1:>5} | {r.order:<6} | {r.off_cpu_ms:>10.2f} | {r.on_cpu_ms:>9.2f} | "
        f"{r.cost * 100:>6.1f}% | {r.off_wall_ms:>11.2f} | {r.on_wall_ms:>10.2f} | "
        f"{r.wall_cost * 100:>8.1f}% |"
    )


HEADER = (
    "| round | order  | off CPU ms | on CPU ms |   cost | off wall ms | on wall ms | wall cost |\n"
    "|------:|--------|-----------:|----------:|-------:|------------:|-----------:|----------:|"
)


def format_result(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [
        f"Audit cost, patient-view in-process ({s['request_bytes'] / 1024:.1f} KiB request), "
        f"{s['rounds']} rounds x {s['calls_per_round']} calls per app in slices of "
        f"{s['calls_per_slice']}, concurrency "
        f"{s['concurrency']}, {s['database']}",
        HEADER,
    ]
    lines += [
        round_line(
            i,
            Round(r["order"], r["off_cpu_ms"], r["on_cpu_ms"], r["off_wall_ms"], r["on_wall_ms"]),
        )
        for i, r in enumerate(result["rounds"])
    ]
    met = "yes" if result["met"] else "NO"
    lines += [
        "",
        f"CPU ms per answer (median): off {result['off_cpu_ms_median']:.2f}, "
        f"on {result['on_cpu_ms_median']:.2f}",
        f"Throughput cost of the audit (CPU): median {result['cost_median'] * 100:.1f}% "
        f"(rounds {result['cost_min'] * 100:.1f}% to {result['cost_max'] * 100:.1f}%); "
        f"wall median {result['wall_cost_median'] * 100:.1f}%. "
        f"Target <= {result['target'] * 100:.0f}%: {met}",
        f"Audit records written: {result['audited']} of {result['expected_audited']}; "
        f"non-200 answers: {result['non_200']}",
    ]
    return "\n".join(lines)


def problems(result: dict[str, Any]) -> list[str]:
    """What makes a run wrong whatever the timings (the smoke run fails on these only)."""
    out = []
    if result["non_200"]:
        out.append(f"{result['non_200']} answer(s) were not 200")
    if result["audited"] != result["expected_audited"]:
        out.append(
            f"{result['audited']} audit records written for {result['expected_audited']} answers"
        )
    return out
