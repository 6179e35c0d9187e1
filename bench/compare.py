"""`python -m bench --compare REF`: this build's service against another commit's, in one run.

REF (any commit git knows: a hash, a tag, `main~3`) is exported with `git archive` into a
temporary directory. When the current interpreter's installed packages satisfy every
requirement REF's pyproject.toml declares, REF runs on this interpreter with its own tree first
on PYTHONPATH (so its `cds_service` is imported, not this one); otherwise a virtualenv is built
in the temporary directory and REF is installed into it with pip. Both services run on the same
stack with the same number of workers (REF with its own production launcher when it has one),
each with a fresh database and `CDS_AUTH=off`, and are driven one after the other with the
same requests, in the order current, REF, REF, current for each case and concurrency (so a
machine that slows down or speeds up during the run favours neither). Reported: requests/s of
each (the mean of its two runs), the ratio current / REF per worker, the server CPU per request
and the peak RSS of each.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import venv
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

from bench.server import Server

ROOT = Path(__file__).resolve().parent.parent
#: Per-worker throughput, current over REF, that the second performance pass aims at.
TARGET = 1.6


def export(ref: str, into: Path) -> str:
    """REF's tree in `into` (git archive); returns the full commit hash."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{ref}^{{commit}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    archive = subprocess.Popen(
        ["git", "-C", str(ROOT), "archive", "--format=tar", commit], stdout=subprocess.PIPE
    )
    subprocess.run(["tar", "-x", "-C", str(into)], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        raise RuntimeError(f"git archive {commit} failed")
    return commit


def unmet_requirements(tree: Path) -> list[str]:
    """REF's runtime requirements the current interpreter's packages do not satisfy."""
    project = tomllib.loads((tree / "pyproject.toml").read_text())["project"]
    unmet = []
    for line in project.get("dependencies", []):
        requirement = Requirement(line)
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            unmet.append(line)
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            unmet.append(f"{line} (installed {installed})")
    return unmet


def interpreter_for(tree: Path, log: Path) -> tuple[str, str]:
    """The Python that runs REF, and how it was chosen."""
    unmet = unmet_requirements(tree)
    if not unmet:
        return sys.executable, "the current interpreter (REF's requirements are all met by it)"
    env_dir = tree / ".venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    # REF's own pinned versions when it has them, so the old build runs as it was tested.
    pins = tree / "constraints.txt"
    constrained = ["-c", str(pins)] if pins.is_file() else []
    with log.open("wb") as out:
        subprocess.run(
            [python, "-m", "pip", "install", "--quiet", *constrained, str(tree)],
            check=True,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return python, "a virtualenv built for REF (unmet here: " + "; ".join(unmet) + ")"


def imported_from(python: str, tree: Path) -> str:
    """Where `cds_service` is imported from with that interpreter and tree (a check)."""
    done = subprocess.run(
        [python, "-c", "import cds_service; print(cds_service.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
    )
    return done.stdout.strip()


def compare(
    *,
    ref: str,
    cases: list[Any],
    bodies: Any,
    run_load: Any,
    settings: Any,
    results: Path,
) -> dict[str, Any]:
    """Runs `cases` against this build and REF; `bodies(case)` gives (body_file, requests_file)."""
    tree = Path(tempfile.mkdtemp(prefix="b12-bench-ref-"))
    commit = export(ref, tree)
    python, how = interpreter_for(tree, results / "compare-ref-pip.log")
    where = imported_from(python, tree)
    if not where.startswith(str(tree)):
        raise RuntimeError(f"REF's service would be imported from {where}, not from {tree}")
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    dirty = bool(
        subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    on = {"stack": settings.stack, "workers": settings.workers}

    def service(name: str, **where: Any) -> Server:
        return Server(
            name,
            "cds_service.app:app",
            {"CDS_AUTH": "off", "CDS_DATA_DIR": tempfile.mkdtemp(prefix="b12-cds-bench-")},
            log_path=results / f"compare-{name}.log",
            **on,
            **where,
        )

    current = service("current")
    previous = service("ref", python=python, tree=tree)
    rows: list[dict[str, Any]] = []
    report: dict[str, Any] = {
        "mode": "compare",
        "ref": ref,
        "ref_commit": commit,
        "current_commit": head,
        "current_has_uncommitted_changes": dirty,
        "ref_interpreter": how,
        "ref_imported_from": where,
        "settings": {
            "duration_s": settings.duration_s,
            "warmup_s": settings.warmup_s,
            "concurrency": list(settings.concurrency),
            "stack": settings.stack,
            "workers": settings.workers,
            "current": " ".join(current.command()[1:]),
            "ref": " ".join(previous.command()[1:]),
        },
        "target": TARGET,
        "rows": rows,
    }
    try:
        current.start()
        previous.start()
        for case in cases:
            body_file, requests_file = bodies(case)
            for c in settings.concurrency:
                runs: dict[str, list[dict[str, Any]]] = {"current": [], "ref": []}
                for who, server in (
                    ("current", current),
                    ("ref", previous),
                    ("ref", previous),
                    ("current", current),
                ):
                    runs[who].append(run_load(server, case, body_file, c, settings, requests_file))
                row = {"case": case.name, "concurrency": c}
                for who, done in runs.items():
                    row[who] = {
                        "rps": sum(r["rps"] for r in done) / len(done),
                        "rps_runs": [r["rps"] for r in done],
                        "p50_ms": [r["p50_ms"] for r in done],
                        "p99_ms": [r["p99_ms"] for r in done],
                        "server_cpu_ms_per_request": _mean(
                            [r.get("server_cpu_ms_per_request") for r in done]
                        ),
                        "non_200": sum(
                            v for r in done for k, v in r["statuses"].items() if k != "200"
                        )
                        + sum(len(r["errors"]) for r in done),
                    }
                ref_rps = row["ref"]["rps"]
                row["ratio"] = row["current"]["rps"] / ref_rps if ref_rps else None
                rows.append(row)
                print(
                    f"  {case.name} c={c}: current {row['current']['rps']:.0f} req/s, "
                    f"REF {ref_rps:.0f} req/s"
                    + (f" ({row['ratio']:.2f}x)" if row["ratio"] else ""),
                    file=sys.stderr,
                    flush=True,
                )
        report["current_peak_rss_mb"] = current.peak_rss_mb()
        report["ref_peak_rss_mb"] = previous.peak_rss_mb()
    finally:
        current.stop()
        previous.stop()
        shutil.rmtree(tree, ignore_errors=True)
    return report


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def format_compare(report: dict[str, Any]) -> str:
    st = report["settings"]
    lines = [
        f"This build ({report['current_commit'][:7]}"
        + (" + uncommitted changes" if report["current_has_uncommitted_changes"] else "")
        + f") against REF {report['ref']} ({report['ref_commit'][:7]}), "
        f"stack {st['stack']}, {st['workers']} worker(s) each; REF runs on "
        f"{report['ref_interpreter']}.",
        f"Each figure: the mean of two {st['duration_s']:g}-s runs (order current, REF, REF, "
        f"current); target >= {report['target']:g}x per worker.",
        "",
        "| case | conc | current req/s | REF req/s | current / REF | current CPU ms/req "
        "| REF CPU ms/req | non-200 |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in report["rows"]:
        cur, ref = row["current"], row["ref"]
        ratio = f"{row['ratio']:.2f}x" if row["ratio"] else "-"
        lines.append(
            f"| {row['case']} | {row['concurrency']} | {cur['rps']:.0f} | {ref['rps']:.0f} | "
            f"{ratio} | {_ms(cur['server_cpu_ms_per_request'])} | "
            f"{_ms(ref['server_cpu_ms_per_request'])} | {cur['non_200'] + ref['non_200']} |"
        )
    lines += [
        "",
        f"Peak RSS: current {report.get('current_peak_rss_mb') or 0:.1f} MB, "
        f"REF {report.get('ref_peak_rss_mb') or 0:.1f} MB.",
    ]
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "-"


def write(report: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
