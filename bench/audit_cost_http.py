"""What the audit trail costs patient-view through HTTP, as EHRs meet it.

The service is served twice on the production launcher, each on its own SQLite database: as
configured, and with its audit step doing nothing (bench/audit_off.py). A load generator per
server (bench/load.py, a process each) drives the repeated patient-view body at one
concurrency; in a round the two run at the same time for the same seconds (`together`, the
default), so both servers meet the same machine: on a shared virtual machine the CPU time of
the same work drifts by up to a factor of two within seconds, which turns of one server and
then the other (`together=False`, which alternates who goes first) turned into per-round costs
anywhere between -7% and +37%. Each round's steady state includes the audited server's
write-behind batches, commits and checkpoints.

Figures per turn: requests/s and the server's CPU per request (/proc, every thread). The cost
is the median over rounds of 1 - off/on CPU per request (answers per CPU-second lost to the
audit), and of 1 - on/off requests/s. Unlike the in-process `--audit-cost`, the denominator
is what a server spends on an answer: HTTP parsing and the response's bytes included.
"""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.server import Server

AUDITED_APP = "cds_service.app:app"
UNAUDITED_APP = "bench.audit_off:app"
TARGET_COST = 0.10


def measure(
    run: Callable[[Server], dict[str, Any]],
    *,
    rounds: int,
    results_dir: Path,
    stack: str = "standard",
    together: bool = True,
) -> dict[str, Any]:
    """`run(server)` drives one turn and returns the load generator's result with the server's
    CPU (bench.__main__.run_load); the apps are started here and stopped at the end."""
    data_dirs = {
        name: tempfile.mkdtemp(prefix=f"b12-cds-audit-http-{name}-") for name in ("on", "off")
    }
    servers = {
        name: Server(
            name,
            app,
            env={"CDS_DATA_DIR": data_dirs[name]},
            log_path=results_dir / f"audit_http_{name}.log",
            stack=stack,
        )
        for name, app in (("on", AUDITED_APP), ("off", UNAUDITED_APP))
    }
    turns: list[dict[str, Any]] = []
    try:
        for server in servers.values():
            server.start()
        for i in range(rounds):
            order = ("off", "on") if i % 2 == 0 else ("on", "off")
            turn: dict[str, Any] = {"order": "together" if together else ",".join(order)}
            if together:
                with ThreadPoolExecutor(2) as pool:
                    futures = {name: pool.submit(run, servers[name]) for name in order}
                    results = {name: f.result() for name, f in futures.items()}
            else:
                results = {name: run(servers[name]) for name in order}
            for name in order:
                result = results[name]
                turn[name] = {
                    "rps": result["count"] / result["duration_s"],
                    "cpu_ms": result.get("server_cpu_ms_per_request"),
                    "answers": result["count"] + sum(result["warmup_statuses"].values()),
                    "non_200": sum(
                        n for s, n in result.get("statuses", {}).items() if str(s) != "200"
                    ),
                }
            turns.append(turn)
    finally:
        for server in servers.values():
            server.stop()  # SIGTERM: the audited server writes what it still holds
    result = summarise(turns)
    # Each server's own record of its answers: all of the audited one's, none of the other's.
    result["audit_records"] = {name: _audit_records(Path(d)) for name, d in data_dirs.items()}
    result["answers"] = {name: sum(t[name]["answers"] for t in turns) for name in ("on", "off")}
    return result


def problems(result: dict[str, Any]) -> list[str]:
    """What makes the run wrong rather than slow."""
    found = []
    if result["non_200"]:
        found.append(f"{result['non_200']} answers were not 200")
    if result["audit_records"]["on"] != result["answers"]["on"]:
        found.append(
            f"the audited server stored {result['audit_records']['on']} audit records for "
            f"{result['answers']['on']} answers"
        )
    if result["audit_records"]["off"]:
        found.append("the unaudited server stored audit records")
    return found


def _audit_records(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "b12-cds.sqlite3") as connection:
        return int(connection.execute("SELECT count(*) FROM guidance_response").fetchone()[0])


def summarise(turns: list[dict[str, Any]]) -> dict[str, Any]:
    cpu_costs = [1 - t["off"]["cpu_ms"] / t["on"]["cpu_ms"] for t in turns]
    rps_costs = [1 - t["on"]["rps"] / t["off"]["rps"] for t in turns]
    cost = statistics.median(cpu_costs)
    return {
        "mode": "audit-cost-http",
        "turns": turns,
        "cpu_cost": cost,
        "rps_cost": statistics.median(rps_costs),
        "on_cpu_ms": statistics.median(t["on"]["cpu_ms"] for t in turns),
        "off_cpu_ms": statistics.median(t["off"]["cpu_ms"] for t in turns),
        "on_rps": statistics.median(t["on"]["rps"] for t in turns),
        "off_rps": statistics.median(t["off"]["rps"] for t in turns),
        "non_200": sum(t[a]["non_200"] for t in turns for a in ("on", "off")),
        "target": TARGET_COST,
        "met": cost <= TARGET_COST,
    }


def format_result(result: dict[str, Any]) -> str:
    lines = [
        "| round | order | off req/s | on req/s | off CPU ms/req | on CPU ms/req | CPU cost |",
        "|--:|---|--:|--:|--:|--:|--:|",
    ]
    for i, t in enumerate(result["turns"], 1):
        off, on = t["off"], t["on"]
        lines.append(
            f"| {i} | {t['order']} | {off['rps']:.0f} | {on['rps']:.0f} | {off['cpu_ms']:.2f} | "
            f"{on['cpu_ms']:.2f} | {1 - off['cpu_ms'] / on['cpu_ms']:.1%} |"
        )
    lines += [
        "",
        f"CPU ms per answer (median): off {result['off_cpu_ms']:.2f}, on {result['on_cpu_ms']:.2f}",
        f"Cost of the audit: CPU {result['cpu_cost']:.1%} (median over rounds), requests/s "
        f"{result['rps_cost']:.1%}. Target <= {TARGET_COST:.0%}: "
        f"{'yes' if result['met'] else 'NO'}; non-200 answers: {result['non_200']}",
        f"Audit records stored: audited server {result['audit_records']['on']} of "
        f"{result['answers']['on']} answers, unaudited server {result['audit_records']['off']}",
    ]
    return "\n".join(lines)
