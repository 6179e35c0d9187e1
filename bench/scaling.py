"""`python -m bench --scaling`: N workers against one, for the bare app and the service alike.

Each app is started twice on the same stack, with one worker and with N, and each is driven
with the same patient-view body at the same concurrency, one after the other in this run: the
ratio of requests/s is what N workers buy on this machine. A multi-worker stack that leaves
Nagle's algorithm on (`--stack uvicorn-cli`) shows here as a collapse at c=1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench import workload
from bench.server import Server

#: The ratio of N workers to one that counts as scaling (reported, never gated on).
TARGET = 1.6


def scaling(
    *,
    apps: dict[str, str],
    workers: int,
    stack: str,
    concurrency: tuple[int, ...],
    run_load: Any,
    case: Any,
    settings: Any,
    results: Path,
) -> dict[str, Any]:
    body = json.dumps(workload.patient_view_request(), separators=(",", ":")).encode()
    body_file = results / "bodies" / "scaling-patient-view.json"
    body_file.parent.mkdir(parents=True, exist_ok=True)
    body_file.write_bytes(body)
    rows: list[dict[str, Any]] = []
    for name, app in apps.items():
        for n in (1, workers):
            env = {"CDS_AUTH": "off"} if name == "service" else {}
            server = Server(
                f"{name}-{n}w",
                app,
                env,
                log_path=results / f"scaling-{name}-{n}w.log",
                stack=stack,
                workers=n,
            )
            with server:
                for c in concurrency:
                    r = run_load(server, case, body_file, c, settings)
                    rows.append({"app": name, "workers": n, "concurrency": c, **r})
                    print(
                        f"  {name} {n} worker(s) c={c}: {r['rps']:.0f} req/s",
                        file=sys.stderr,
                        flush=True,
                    )
                rows[-1]["peak_rss_mb"] = server.peak_rss_mb()
    for row in rows:
        one = next(
            r
            for r in rows
            if r["app"] == row["app"]
            and r["workers"] == 1
            and r["concurrency"] == row["concurrency"]
        )
        row["vs_one_worker"] = row["rps"] / one["rps"] if one["rps"] else None
    return {"stack": stack, "workers": workers, "target": TARGET, "rows": rows}


def format_scaling(report: dict[str, Any]) -> str:
    lines = [
        f"Scaling on stack {report['stack']}: {report['workers']} workers against one "
        f"(target >= {report['target']:g}x at the highest concurrency)",
        "",
        "| app | workers | conc | req/s | p50 ms | p99 ms | vs 1 worker | srv CPU ms/req |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in report["rows"]:
        cpu = r.get("server_cpu_ms_per_request")
        ratio = r.get("vs_one_worker")
        lines.append(
            f"| {r['app']} | {r['workers']} | {r['concurrency']} | {r['rps']:.0f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{(f'{ratio:.2f}x' if ratio else '-')} | {(f'{cpu:.2f}' if cpu else '-')} |"
        )
    return "\n".join(lines)
