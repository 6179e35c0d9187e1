"""`python -m bench.same_answers REF`: does this build answer every request as commit REF does?

A performance change must not change an answer. This drives the same requests through this
build's app and REF's (exported with `git archive`, as `--compare` does, and run on this
interpreter with its tree first on PYTHONPATH, or in a virtualenv built for it), in process
through the whole ASGI stack, with a fixed start date, and compares the answers byte for byte:
status and body. The requests: every `fhir_examples/requests/*.json`, the cohort's
view → select → sign sequence (bench/cohort.py) and the bench's own bodies. Card uuids and
GuidanceResponse ids (versions 4 and 7) are fresh on every call, so they are masked; the
name-based (version 5) ids that group a plan's MedicationRequests are kept.

The requests are built once, here, and handed to both builds as a file: the driver below runs as
a script with the build's own `cds_service` and imports nothing else of this repository.
Exit status 1 and the first differing answers when any differs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: Start dates the answers are compared on: a month end, a leap-year boundary, a year end.
START_DATES = (date(2026, 11, 20), date(2027, 2, 28), date(2026, 12, 31))
#: Fresh ids (versions 4 and 7), masked before answers are compared.
FRESH_ID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[47][0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}")


def requests(cohort_size: int = 225) -> list[dict[str, Any]]:
    """(name, path, body) of every request compared."""
    from bench import cohort, workload

    out = []
    for path in sorted((ROOT / "fhir_examples" / "requests").glob("*.json")):
        body = json.loads(path.read_text())
        if not isinstance(body, dict) or "hook" not in body:
            continue
        out.append({"name": path.name, "path": f"/cds-services/b12-{body['hook']}", "body": body})
    for i, (service, body) in enumerate(cohort.cohort(cohort_size)):
        out.append({"name": f"cohort-{i}", "path": f"/cds-services/{service}", "body": body})
    for name, body in (
        ("bench-patient-view", workload.patient_view_request()),
        ("bench-order-sign", workload.order_sign_request()),
    ):
        out.append({"name": name, "path": f"/cds-services/b12-{body['hook']}", "body": body})
    return out


def write_requests(path: Path, cohort_size: int = 225) -> int:
    """`requests(cohort_size)` as the JSON lines the driver reads (each body as JSON text, so
    both builds are sent the same bytes); returns how many."""
    items = requests(cohort_size)
    with path.open("w") as out:
        for item in items:
            out.write(json.dumps({**item, "body": json.dumps(item["body"])}) + "\n")
    return len(items)


def asgi_scope(body: bytes, path: str) -> dict[str, Any]:
    """The ASGI scope of a JSON POST of `body` to `path`, as a server on loopback makes it (the
    benchmarks that drive an app in process use it too)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"bench.local"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
    }


async def answer(app: Any, path: str, body: bytes) -> tuple[int, bytes]:
    """One request through the app's whole ASGI stack: its status and body."""
    status = 0
    chunks: list[bytes] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.get_running_loop().create_future()  # the client never disconnects
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    scope = asgi_scope(body, path)
    await app(scope, receive, send)
    return status, b"".join(chunks)


async def _drive(requests_file: Path, out: Path, start: date) -> None:
    from cds_service.app import create_app
    from cds_service.settings import Settings

    data_dir = tempfile.mkdtemp(prefix="b12-cds-answers-")
    app = create_app(Settings(auth=False, data_dir=data_dir), clock=lambda: start)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    try:
        with requests_file.open() as lines, out.open("wb") as written:
            for line in lines:
                item = json.loads(line)
                status, body = await answer(app, item["path"], item["body"].encode())
                written.write(
                    item["name"].encode()
                    + b" "
                    + str(status).encode()
                    + b" "
                    + FRESH_ID.sub(b"<fresh-id>", body)
                    + b"\n"
                )
    finally:
        await lifespan.__aexit__(None, None, None)
        shutil.rmtree(data_dir, ignore_errors=True)


def answers_of(python: str, tree: Path, requests_file: Path, out: Path, start: date) -> None:
    """The answers of the build in `tree` (its `cds_service` first on the path) into `out`."""
    done = subprocess.run(
        [
            python,
            str(Path(__file__).resolve()),
            "--drive",
            str(requests_file),
            str(out),
            start.isoformat(),
        ],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree), "CDS_AUTH": "off"},
        stderr=subprocess.PIPE,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the build in {tree} could not answer:\n{done.stderr[-2000:]}")


def differences(ours: Path, theirs: Path, limit: int = 5) -> list[str]:
    """The first answers that differ (by name, with the byte where they part), and the counts
    when one build gave more answers than the other."""
    a, b = ours.read_bytes().splitlines(), theirs.read_bytes().splitlines()
    out = [f"{len(a)} answers against {len(b)}"] if len(a) != len(b) else []
    for mine, other in zip(a, b, strict=False):
        if mine != other and len(out) < limit:
            name = mine.split(b" ", 1)[0].decode()
            at = next(
                (i for i, (x, y) in enumerate(zip(mine, other, strict=False)) if x != y),
                min(len(mine), len(other)),
            )
            out.append(f"{name} differs at byte {at}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.same_answers")
    parser.add_argument("ref", help="the commit to compare with (hash, tag, main~3)")
    parser.add_argument("--cohort", type=int, default=225, help="cohort patients (default 225)")
    parser.add_argument(
        "--dates", type=int, default=len(START_DATES), help="how many of the start dates"
    )
    args = parser.parse_args(argv)
    from bench.compare import export, interpreter_for

    with tempfile.TemporaryDirectory(prefix="b12-cds-same-answers-") as tmp:
        work = Path(tmp)
        tree = work / "ref"
        tree.mkdir()
        commit = export(args.ref, tree)
        python, how = interpreter_for(tree, work / "pip.log")
        requests_file = work / "requests.jsonl"
        count = write_requests(requests_file, args.cohort)
        print(f"{count} requests, REF {commit[:12]} on {how}")
        failed = False
        for start in START_DATES[: args.dates]:
            ours, theirs = work / f"ours-{start}.txt", work / f"ref-{start}.txt"
            answers_of(sys.executable, ROOT, requests_file, ours, start)
            answers_of(python, tree, requests_file, theirs, start)
            found = differences(ours, theirs)
            print(f"start {start}: " + ("; ".join(found) if found else "every answer the same"))
            failed = failed or bool(found)
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--drive":
        asyncio.run(_drive(Path(sys.argv[2]), Path(sys.argv[3]), date.fromisoformat(sys.argv[4])))
    else:
        sys.exit(main())
