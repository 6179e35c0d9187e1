"""`python -m bench`: the service against a do-nothing baseline on the same stack, on this machine.

    python -m bench                 # full run (< 3 min): tables + bench/results/latest.json
    python -m bench --smoke         # CI: tiny durations, asserts every request got HTTP 200
    python -m bench --profile       # in-process stage profile of one patient-view request
    python -m bench --scaling       # 2 workers against 1, bare app and service (--workers N)
    python -m bench --audit-cost    # audit on against off, in-process rounds (with --smoke: CI)

The cases are data (CASES below). A case whose probe request answers a status in its
`skip_statuses` (412: the fallback fetch is not wired yet) is reported as skipped, not failed.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import httpx

from bench import cohort, workload
from bench.server import STACKS, Server

RESULTS = Path(__file__).resolve().parent / "results"
SERVICE_APP = "cds_service.app:app"
BASELINE_APP = "bench.baseline:app"
FLOOR_APP = "bench.floor:app"
#: The apps a run may drive, in the order they are run and reported.
APPS = ("service", "floor", "baseline")


@dataclass(frozen=True)
class Env:
    """What a case's body may depend on."""

    fhir_server: str | None = None


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    #: The JSON body (None for GET).
    body: Callable[[Env], dict[str, Any]] | None = None
    description: str = ""
    #: Needs the loopback FHIR test server (tests/fhirserver) holding the workload patient.
    needs_fhir_server: bool = False
    #: Probe answers that mean "not available in this build": the case is skipped, not failed.
    skip_statuses: tuple[int, ...] = (412,)
    #: Also run the validation floor (bench/floor.py): the ceiling of the service's ratio.
    floor: bool = False
    #: Several requests sent in turn instead of one body: (path, body) each (bench/cohort.py).
    requests: Callable[[Env], list[tuple[str, dict[str, Any]]]] | None = None


@cache
def _cohort() -> tuple[tuple[str, dict[str, Any]], ...]:
    return tuple((f"/cds-services/{service}", body) for service, body in cohort.cohort())


def cohort_views(env: Env) -> list[tuple[str, dict[str, Any]]]:
    return [(path, body) for path, body in _cohort() if body["hook"] == "patient-view"]


def cohort_sequences(env: Env) -> list[tuple[str, dict[str, Any]]]:
    return list(_cohort())


CASES: tuple[Case, ...] = (
    Case(
        "patient-view",
        "POST",
        "/cds-services/b12-patient-view",
        lambda env: workload.patient_view_request(),
        "patient-view, full prefetch: 40 observations over 2 years, 8 conditions",
        floor=True,
    ),
    Case(
        "patient-view-distinct",
        "POST",
        "/cds-services/b12-patient-view",
        description=f"patient-view, {cohort.DEFAULT_SIZE} distinct patients in turn "
        "(bench/cohort.py: golden patients with their own ids, dates, values and history)",
        floor=True,
        requests=cohort_views,
    ),
    Case(
        "sequence",
        "POST",
        "/cds-services/b12-patient-view",
        description=f"view, select, sign for each of the {cohort.DEFAULT_SIZE} patients in turn",
        requests=cohort_sequences,
    ),
    Case(
        "order-sign",
        "POST",
        "/cds-services/b12-order-sign",
        lambda env: workload.order_sign_request(),
        "order-sign, same prefetch + draft IV cyanocobalamin and folic acid orders",
    ),
    Case("discovery", "GET", "/cds-services", None, "GET /cds-services"),
    Case(
        "fallback-fetch",
        "POST",
        "/cds-services/b12-patient-view",
        lambda env: workload.fallback_fetch_request(env.fhir_server or ""),
        "patient-view with no prefetch: the service fetches from a loopback FHIR server",
        needs_fhir_server=True,
    ),
)

#: The cases `--compare` runs unless `--case` names others.
COMPARED = ("patient-view", "patient-view-distinct", "sequence")

#: (case, concurrency, metric, comparison, limit) -- reported, never gated on.
TARGETS: tuple[tuple[str, int | None, str, str, float], ...] = (
    ("patient-view", 16, "ratio", ">=", 0.30),
    ("patient-view-distinct", 16, "ratio", ">=", 0.30),
    ("patient-view", 1, "p50_ms", "<=", 3.0),
    ("patient-view", 16, "p99_ms", "<=", 25.0),
    ("discovery", 1, "ratio", ">=", 0.80),
    ("discovery", 16, "ratio", ">=", 0.80),
    ("fallback-fetch", 16, "p99_ms", "<=", 100.0),
    ("service", None, "peak_rss_mb", "<=", 150.0),
)


@dataclass
class Settings:
    mode: str
    duration_s: float
    warmup_s: float
    concurrency: tuple[int, ...]
    client: str
    out: Path
    cases: tuple[str, ...] | None
    stack: str = "standard"
    workers: int = 1
    service_app: str = SERVICE_APP
    baseline_app: str = BASELINE_APP
    floor_app: str = FLOOR_APP
    notes: list[str] = field(default_factory=list)


def run_load(
    server: Server,
    case: Case,
    body_file: Path | None,
    c: int,
    s: Settings,
    requests_file: Path | None = None,
) -> Any:
    """One closed-loop run from a separate process (bench/load.py)."""
    spec = {
        "requests_file": str(requests_file) if requests_file else None,
        "host": "127.0.0.1",
        "port": server.port,
        "method": case.method,
        "path": case.path,
        "body_file": str(body_file) if body_file else None,
        "concurrency": c,
        "duration_s": s.duration_s,
        "warmup_s": s.warmup_s,
        "client": s.client,
    }
    cpu_before = server.cpu_s()
    done = subprocess.run(
        [sys.executable, "-m", "bench.load"],
        input=json.dumps(spec).encode(),
        capture_output=True,
        timeout=s.duration_s + s.warmup_s + 60,
        cwd=Path(__file__).resolve().parent.parent,
    )
    cpu_after = server.cpu_s()
    if not done.stdout.strip():
        raise RuntimeError(f"load generator failed: {done.stderr.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    if cpu_before is not None and cpu_after is not None:
        # Includes the warmup; the server's CPU time per counted request is an estimate.
        total = result["count"] + sum(result["warmup_statuses"].values())
        cpu = cpu_after - cpu_before
        result["server_cpu_s"] = cpu
        result["server_cpu_ms_per_request"] = cpu / total * 1000 if total else None
        result["server_cpu_util"] = cpu / (s.duration_s + s.warmup_s)
    return result


def probe(
    server: Server, case: Case, body: bytes | None, path: str | None = None
) -> tuple[int, str]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    r = httpx.request(
        case.method,
        server.base_url + (path or case.path),
        content=body,
        headers=headers,
        timeout=30,
    )
    return r.status_code, r.text[:300]


#: Requests of a several-request case probed before its runs (one patient's whole sequence).
PROBED = 3


def case_inputs(
    case: Case, env: Env, bodies_dir: Path, entry: dict[str, Any]
) -> tuple[Path | None, Path | None, list[tuple[str, bytes | None]]]:
    """The files bench/load.py sends for `case` (its body, or its requests in turn) and the
    requests to probe first; notes their sizes in `entry`."""
    body_file = requests_file = None
    body = None
    if case.body is not None:
        body = json.dumps(case.body(env), separators=(",", ":")).encode()
        body_file = bodies_dir / f"{case.name}.json"
        body_file.write_bytes(body)
        entry["request_bytes"] = len(body)
    probes: list[tuple[str, bytes | None]] = [(case.path, body)]
    if case.requests is not None:
        requests_file, probes, sizes = write_requests(
            case.requests(env), bodies_dir / f"{case.name}.jsonl"
        )
        entry["distinct_requests"] = len(sizes)
        entry["request_bytes"] = sorted(sizes)[len(sizes) // 2]
        entry["request_bytes_range"] = [min(sizes), max(sizes)]
    return body_file, requests_file, probes


def write_requests(
    requests: list[tuple[str, dict[str, Any]]], out: Path
) -> tuple[Path, list[tuple[str, bytes | None]], list[int]]:
    """The requests file bench/load.py sends in turn; the probes; each body's size."""
    sizes, probes = [], []
    with out.open("w", encoding="utf-8") as fh:
        for path, body in requests:
            text = json.dumps(body, separators=(",", ":"))
            fh.write(json.dumps({"method": "POST", "path": path, "body": text}) + "\n")
            sizes.append(len(text.encode()))
            if len(probes) < PROBED:
                probes.append((path, text.encode()))
    return out, probes, sizes


def start_fhir_server() -> tuple[Any, str | None, str | None]:
    """The loopback FHIR test server with the workload patient, or (None, None, reason)."""
    root = Path(__file__).resolve().parent.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        from tests.fhirserver.runner import FhirTestServer
    except ImportError as exc:
        return None, None, f"tests/fhirserver is not importable ({exc})"
    server = FhirTestServer([workload.patient_bundle()]).start()
    return server, server.base_url, None


def ok(result: dict[str, Any]) -> bool:
    statuses = {**result["statuses"], **result["warmup_statuses"]}
    return result["count"] > 0 and set(statuses) == {"200"} and not result["errors"]


def benchmark(s: Settings) -> dict[str, Any]:
    started = time.monotonic()
    RESULTS.mkdir(parents=True, exist_ok=True)
    bodies_dir = RESULTS / "bodies"
    bodies_dir.mkdir(exist_ok=True)
    cases = [c for c in CASES if s.cases is None or c.name in s.cases]

    fhir, fhir_url, fhir_problem = None, None, None
    if any(c.needs_fhir_server for c in cases):
        fhir, fhir_url, fhir_problem = start_fhir_server()
    env = Env(fhir_server=fhir_url)

    on = {"stack": s.stack, "workers": s.workers}
    service = Server(
        "service",
        s.service_app,
        # A fresh database per run: the audit trail is written as in production.
        {"CDS_AUTH": "off", "CDS_DATA_DIR": tempfile.mkdtemp(prefix="b12-cds-bench-")},
        log_path=RESULTS / "service.log",
        **on,
    )
    baseline = Server("baseline", s.baseline_app, log_path=RESULTS / "baseline.log", **on)
    floor = (
        Server("floor", s.floor_app, log_path=RESULTS / "floor.log", **on)
        if any(c.floor for c in cases)
        else None
    )
    report: dict[str, Any] = {
        "mode": s.mode,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_busy_before_start": _cpu_busy(),
        },
        "settings": {
            "duration_s": s.duration_s,
            "warmup_s": s.warmup_s,
            "concurrency": list(s.concurrency),
            "client": s.client,
            "stack": s.stack,
            "workers": s.workers,
            "service": " ".join(service.command()[1:]),
            "baseline": " ".join(baseline.command()[1:]),
            "floor": " ".join(floor.command()[1:]) if floor else None,
        },
        "cases": [],
    }
    try:
        service.start()
        baseline.start()
        if floor is not None:
            floor.start()
        report["service_rss_at_start_mb"] = service.rss_mb()
        report["baseline_rss_at_start_mb"] = baseline.rss_mb()
        for case in cases:
            entry: dict[str, Any] = {
                "name": case.name,
                "description": case.description,
                "method": case.method,
                "path": case.path,
                "runs": [],
            }
            report["cases"].append(entry)
            if case.needs_fhir_server and fhir_url is None:
                entry["skipped"] = f"no FHIR test server: {fhir_problem}"
                continue
            body_file, requests_file, probes = case_inputs(case, env, bodies_dir, entry)
            for path, probe_body in probes:
                status, text = probe(service, case, probe_body, path)
                if status != 200:
                    break
            entry["probe_status"] = status
            if status in case.skip_statuses:
                entry["skipped"] = f"service answered {status}: {text}"
                continue
            if status != 200:
                entry["failed"] = f"probe answered {status}: {text}"
                continue
            for c in s.concurrency:
                run: dict[str, Any] = {"concurrency": c}
                run["service"] = run_load(service, case, body_file, c, s, requests_file)
                if case.floor and floor is not None:
                    run["floor"] = run_load(floor, case, body_file, c, s, requests_file)
                base = run["baseline"] = run_load(baseline, case, body_file, c, s, requests_file)
                for who in ("service", "floor"):
                    if who in run:
                        run[who]["ratio"] = run[who]["rps"] / base["rps"] if base["rps"] else None
                entry["runs"].append(run)
                print(_run_line(case.name, run), file=sys.stderr, flush=True)
        report["service_peak_rss_mb"] = service.peak_rss_mb()
        report["baseline_peak_rss_mb"] = baseline.peak_rss_mb()
    finally:
        service.stop()
        baseline.stop()
        if floor is not None:
            floor.stop()
        if fhir is not None:
            fhir.stop()
    report["targets"] = evaluate_targets(report)
    report["elapsed_s"] = time.monotonic() - started
    s.out.parent.mkdir(parents=True, exist_ok=True)
    s.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def _cpu_busy(window_s: float = 0.5) -> float | None:
    """Share of all CPUs busy over a short window (/proc/stat), before our servers start."""

    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        return idle, sum(values)

    try:
        idle0, total0 = sample()
        time.sleep(window_s)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    total = total1 - total0
    return round(1 - (idle1 - idle0) / total, 3) if total > 0 else None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def _run_line(name: str, run: dict[str, Any]) -> str:
    parts = [
        f"{who} {run[who]['rps']:.0f} req/s"
        + (f" ({run[who]['ratio'] * 100:.0f}%)" if run[who].get("ratio") else "")
        for who in APPS
        if who in run
    ]
    return f"  {name} c={run['concurrency']}: " + ", ".join(parts)


def evaluate_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    runs = {
        (case["name"], run["concurrency"]): run for case in report["cases"] for run in case["runs"]
    }
    for case, c, metric, op, limit in TARGETS:
        if case == "service":
            value = report.get("service_peak_rss_mb")
        else:
            value = runs.get((case, c), {}).get("service", {}).get(metric)
        met = None
        if value is not None:
            met = value >= limit if op == ">=" else value <= limit
        target: dict[str, Any] = {
            "case": case,
            "concurrency": c,
            "metric": metric,
            "target": f"{op} {limit:g}",
            "value": value,
            "met": met,
        }
        base = runs.get((case, c), {}).get("baseline")
        if metric == "p99_ms" and base is not None:
            # A p99 counts only from a run whose machine kept its speed: the baseline's slice
            # medians within SLICE_SPREAD of each other (bench/README.md, "p50 by 0.5 s").
            target["baseline_slice_spread"] = slice_spread(base)
            steady = target["baseline_slice_spread"] is not None and (
                target["baseline_slice_spread"] <= SLICE_SPREAD
            )
            target["steady_run"] = steady
            if met is not None and not steady:
                met = None
                target["met"] = None
        floor = runs.get((case, c), {}).get("floor")
        if floor is not None and metric in floor:
            # The service's bound: what it would reach if the rest of its work cost nothing.
            target["floor"] = floor[metric]
        out.append(target)
    return out


def format_report(report: dict[str, Any]) -> str:
    m = report["machine"]
    st = report["settings"]
    lines = [
        f"Machine: {m['cpus']} CPU(s), {m['cpu_model']}, Python {m['python']}",
        f"Each run: {st['duration_s']:g} s measured after {st['warmup_s']:g} s warmup, "
        f"closed loop, keep-alive, load generator in its own process ({st['client']} client). "
        f"Service, floor and baseline on the same stack ({st.get('stack', 'standard')}), "
        f"{st.get('workers', 1)} worker(s) each.",
    ]
    busy = m.get("cpu_busy_before_start")
    if busy is not None and busy > 0.15:
        lines.append(
            f"WARNING: the CPUs were {busy * 100:.0f}% busy before the start: other processes "
            "share them, so the numbers are noisy. Re-run on a quiet machine."
        )
    for case in report["cases"]:
        lines += ["", f"### {case['name']}: {case['description']}"]
        if "distinct_requests" in case:
            low, high = case["request_bytes_range"]
            lines[-1] += (
                f" ({case['distinct_requests']} requests in turn, median "
                f"{case['request_bytes'] / 1024:.1f} KiB, {low / 1024:.1f}–{high / 1024:.1f} KiB)"
            )
        elif "request_bytes" in case:
            lines[-1] += f" (request {case['request_bytes'] / 1024:.1f} KiB)"
        if case.get("skipped"):
            lines.append(f"SKIPPED: {case['skipped']}")
            continue
        if case.get("failed"):
            lines.append(f"FAILED: {case['failed']}")
            continue
        lines += [
            "| conc | app      |  req/s | p50 ms | p99 ms | p50 by 0.5 s | vs baseline "
            "| srv CPU ms/req | non-200 |",
            "|-----:|----------|-------:|-------:|-------:|-------------:|------------:"
            "|---------------:|--------:|",
        ]
        for run in case["runs"]:
            for who in APPS:
                if who not in run:
                    continue
                r = run[who]
                ratio = f"{r['ratio'] * 100:.1f}%" if r.get("ratio") else ""
                cpu = r.get("server_cpu_ms_per_request")
                bad = sum(v for k, v in r["statuses"].items() if k != "200") + len(r["errors"])
                lines.append(
                    f"| {run['concurrency']:>4} | {who:<8} | {r['rps']:>6.0f} | "
                    f"{r['p50_ms']:>6.2f} | {r['p99_ms']:>6.2f} | {_spread(r):>12} | {ratio:>11} | "
                    f"{(f'{cpu:.2f}' if cpu is not None else '-'):>14} | {bad:>7} |"
                )
    rss, base_rss = report.get("service_peak_rss_mb"), report.get("baseline_peak_rss_mb")
    lines += [
        "",
        f"Peak RSS (VmHWM) at the end: service {rss or 0:.1f} MB "
        f"(at start {report.get('service_rss_at_start_mb') or 0:.1f} MB), "
        f"baseline {base_rss or 0:.1f} MB",
        "",
        "| target | value | met |",
        "|---|---:|---|",
    ]
    for t in report["targets"]:
        where = t["case"] + (f" c{t['concurrency']}" if t["concurrency"] else "")
        value = t["value"]
        shown = "-" if value is None else _metric(t["metric"], value)
        if t.get("floor") is not None:
            shown += f" (floor {_metric(t['metric'], t['floor'])})"
        if t.get("baseline_slice_spread") is not None:
            shown += f" (baseline slices {t['baseline_slice_spread']:.2f}x)"
        target = t["target"]
        if t["metric"] == "ratio":
            op, limit = target.split()
            target = f"{op} {float(limit) * 100:g}%"
        met = {True: "yes", False: "NO", None: "n/a"}[t["met"]]
        if t.get("steady_run") is False:
            met += f" (baseline slices beyond {SLICE_SPREAD:g}x: the machine changed speed)"
        lines.append(f"| {where} {t['metric']} {target} | {shown} | {met} |")
    lines.append(f"\nTotal time {report['elapsed_s']:.0f} s. Results: {_display(report)}")
    return "\n".join(lines)


#: Highest over lowest baseline slice median for a run whose p99 counts.
SLICE_SPREAD = 1.2


def slice_spread(run: dict[str, Any]) -> float | None:
    medians = run.get("window_p50_ms") or []
    return max(medians) / min(medians) if medians and min(medians) > 0 else None


def _spread(run: dict[str, Any]) -> str:
    """The lowest and highest median latency of the run's 0.5-s slices (bench/load.py)."""
    medians = run.get("window_p50_ms") or []
    return f"{min(medians):.1f}–{max(medians):.1f}" if medians else "-"


def _metric(metric: str, value: float) -> str:
    return f"{value * 100:.1f}%" if metric == "ratio" else f"{value:.2f}"


def _display(report: dict[str, Any]) -> str:
    return str(report.get("out", ""))


def smoke_check(report: dict[str, Any], out: Path) -> list[str]:
    problems = []
    if not out.is_file():
        problems.append(f"{out} was not written")
    for case in report["cases"]:
        if case.get("failed"):
            problems.append(f"{case['name']}: {case['failed']}")
        for run in case["runs"]:
            for who in APPS:
                r = run.get(who)
                if r is not None and not ok(r):
                    problems.append(
                        f"{case['name']} c{run['concurrency']} {who}: count {r['count']}, "
                        f"statuses {r['statuses']} (warmup {r['warmup_statuses']}), "
                        f"errors {r['errors'][:3]}"
                    )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="CI: 0.3 s per case, c1 and c4")
    mode.add_argument("--profile", action="store_true", help="in-process stage profile")
    mode.add_argument(
        "--scaling", action="store_true", help="N workers (--workers, default 2) against one"
    )
    parser.add_argument(
        "--audit-cost",
        action="store_true",
        help="audit trail on against off, in-process, alternating rounds (--smoke: a quick run)",
    )
    parser.add_argument("--rounds", type=int, help="--audit-cost: rounds (default 8; smoke 2)")
    parser.add_argument(
        "--http",
        action="store_true",
        help="--audit-cost: two servers (audit on, off) through HTTP instead of in-process",
    )
    parser.add_argument(
        "--alternate",
        action="store_true",
        help="--audit-cost --http: load one server, then the other, instead of both at once",
    )
    parser.add_argument(
        "--slice", type=int, help="--audit-cost: calls per turn of each app (default 50; smoke 10)"
    )
    mode.add_argument(
        "--compare",
        metavar="REF",
        help="this build's service against commit REF's, side by side (bench/compare.py)",
    )
    parser.add_argument("--stack", choices=STACKS, default="standard", help="HTTP server stack")
    parser.add_argument("--workers", type=int, help="worker processes per app (default 1)")
    parser.add_argument("--duration", type=float, help="measured seconds per run (default 4)")
    parser.add_argument("--warmup", type=float, help="warmup seconds per run (default 0.5)")
    parser.add_argument("--concurrency", help="comma-separated, default 1,16 (smoke: 1,4)")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw")
    parser.add_argument("--case", action="append", help="run only this case (repeatable)")
    parser.add_argument("--out", type=Path, help="results JSON (default bench/results/…)")
    parser.add_argument(
        "-n", type=int, help="--profile: runs (default 2000); --audit-cost: calls per app a round"
    )
    parser.add_argument("--hook", choices=("patient-view", "order-sign"), default="patient-view")
    parser.add_argument("--service-app", default=SERVICE_APP, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.audit_cost:
        if args.profile or args.scaling:
            parser.error("--audit-cost runs alone (or with --smoke)")
        return audit_cost(args)

    if args.profile:
        from bench.stages import format_profile, profile

        result = profile(args.n or 2000, hook=args.hook)
        out = args.out or RESULTS / "profile.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(format_profile(result))
        print(f"\nResults: {out}")
        return 0

    if args.scaling:
        from bench.scaling import format_scaling, scaling

        s = Settings(
            mode="scaling",
            duration_s=args.duration if args.duration is not None else 4.0,
            warmup_s=args.warmup if args.warmup is not None else 0.5,
            concurrency=tuple(int(x) for x in (args.concurrency or "1,16").split(",")),
            client=args.client,
            out=args.out or RESULTS / "scaling.json",
            cases=None,
        )
        result = scaling(
            apps={"baseline": BASELINE_APP, "service": args.service_app},
            workers=args.workers or 2,
            stack=args.stack,
            concurrency=s.concurrency,
            run_load=run_load,
            case=CASES[0],
            settings=s,
            results=RESULTS,
        )
        s.out.write_text(json.dumps(result, indent=2) + "\n")
        print(format_scaling(result))
        print(f"\nResults: {s.out}")
        return 0

    if args.compare:
        from bench.compare import compare, format_compare, write

        s = Settings(
            mode="compare",
            duration_s=args.duration if args.duration is not None else 4.0,
            warmup_s=args.warmup if args.warmup is not None else 0.5,
            concurrency=tuple(int(x) for x in (args.concurrency or "1,16").split(",")),
            client=args.client,
            out=args.out or RESULTS / "compare.json",
            cases=tuple(args.case) if args.case else COMPARED,
            stack=args.stack,
            workers=args.workers or 1,
        )
        bodies_dir = RESULTS / "bodies"
        bodies_dir.mkdir(parents=True, exist_ok=True)
        chosen = [c for c in CASES if c.name in (s.cases or ()) and not c.needs_fhir_server]
        result = compare(
            ref=args.compare,
            cases=chosen,
            bodies=lambda case: case_inputs(case, Env(), bodies_dir, {})[:2],
            run_load=run_load,
            settings=s,
            results=RESULTS,
        )
        write(result, s.out)
        print(format_compare(result))
        print(f"\nResults: {s.out}")
        return 0

    smoke = bool(args.smoke)
    conc = args.concurrency or ("1,4" if smoke else "1,16")
    s = Settings(
        mode="smoke" if smoke else "full",
        duration_s=args.duration if args.duration is not None else (0.3 if smoke else 4.0),
        warmup_s=args.warmup if args.warmup is not None else (0.1 if smoke else 0.5),
        concurrency=tuple(int(x) for x in conc.split(",")),
        client=args.client,
        out=args.out or RESULTS / ("smoke.json" if smoke else "latest.json"),
        cases=tuple(args.case) if args.case else None,
        service_app=args.service_app,
        stack=args.stack,
        workers=args.workers or 1,
    )
    report = benchmark(s)
    report["out"] = str(s.out)
    print(format_report(report))
    problems = smoke_check(report, s.out)
    for p in problems:
        print(f"PROBLEM: {p}", file=sys.stderr)
    if smoke:
        print("smoke: " + ("FAILED" if problems else "ok (timings are not checked)"))
    return 1 if problems else 0


def audit_cost(args: argparse.Namespace) -> int:
    """`--audit-cost`: the table, bench/results/audit_cost.json; 1 only on a wrong answer."""
    import asyncio

    from bench.audit_cost import HEADER, format_result, measure, problems, round_line

    smoke = bool(args.smoke)
    if args.http:
        return audit_cost_http(args, smoke)
    concurrency = int((args.concurrency or ("2" if smoke else "4")).split(",")[0])
    busy = _cpu_busy()
    print(HEADER, file=sys.stderr, flush=True)
    result = asyncio.run(
        measure(
            rounds=args.rounds or (2 if smoke else 8),
            n=args.n or (20 if smoke else 300),
            concurrency=concurrency,
            warmup=10 if smoke else 100,
            slice_calls=args.slice or (10 if smoke else 50),
            database_url=os.environ.get("CDS_DATABASE_URL") or None,
            on_round=lambda i, r: print(round_line(i, r), file=sys.stderr, flush=True),
        )
    )
    result["machine"] = {"cpus": os.cpu_count(), "cpu_busy_before_start": busy}
    out = args.out or RESULTS / ("audit_cost_smoke.json" if smoke else "audit_cost.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(format_result(result))
    print(f"\nResults: {out}")
    found = problems(result)
    for p in found:
        print(f"PROBLEM: {p}", file=sys.stderr)
    if smoke:
        print("audit-cost smoke: " + ("FAILED" if found else "ok (timings are not checked)"))
    return 1 if found else 0


def audit_cost_http(args: argparse.Namespace, smoke: bool) -> int:
    """`--audit-cost --http`: bench/results/audit_cost_http.json; 1 only on a wrong answer or a
    lost audit record."""
    from bench import audit_cost_http as http

    case = next(c for c in CASES if c.name == "patient-view")
    concurrency = int((args.concurrency or "16").split(",")[0])
    s = Settings(
        mode="audit-cost-http",
        duration_s=args.duration or (0.5 if smoke else 2.0),
        warmup_s=args.warmup if args.warmup is not None else (0.2 if smoke else 0.3),
        concurrency=(concurrency,),
        client=args.client,
        out=RESULTS,
        cases=("patient-view",),
        stack=args.stack,
    )
    bodies = RESULTS / "bodies"
    bodies.mkdir(parents=True, exist_ok=True)
    body_file, _, _ = case_inputs(case, Env(), bodies, {})
    busy = _cpu_busy()
    result = http.measure(
        lambda server: run_load(server, case, body_file, concurrency, s),
        rounds=args.rounds or (2 if smoke else 8),
        results_dir=RESULTS,
        stack=args.stack,
        together=not args.alternate,
    )
    result["machine"] = {"cpus": os.cpu_count(), "cpu_busy_before_start": busy}
    result["concurrency"] = concurrency
    out = args.out or RESULTS / ("audit_cost_http_smoke.json" if smoke else "audit_cost_http.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    how = "one server, then the other" if args.alternate else "both servers at once"
    print(
        f"patient-view at c={concurrency} per server, {s.duration_s:g} s turns ({how}), "
        f"stack {args.stack}"
    )
    print(http.format_result(result))
    print(f"\nResults: {out}")
    found = http.problems(result)
    for p in found:
        print(f"PROBLEM: {p}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
