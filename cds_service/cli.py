"""`b12-cds plan FILE`: the clinical answer for a FHIR Bundle or a CDS Hooks request, without a
server (`-` reads standard input). `b12-cds db upgrade` / `b12-cds db purge`: the state database
named by the CDS_* settings.

Bad input ends with one line on stderr and exit 2, never a traceback: the CLI is used in
scripts and by clinicians checking a record. A closed pipe (`b12-cds plan x.json | head`) ends
quietly with 141, as a tool killed by SIGPIPE; an interruption exits 130.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

from cds_service.clinical.extract import InvalidResourceError
from cds_service.clinical.references import full_urls_of
from cds_service.engine import Engine, bundle_resources
from cds_service.hooks.models import RequestError, parse_hook_request
from cds_service.hooks.prefetch import MissingPrefetch, PrefetchError, resolve
from cds_service.protocol import ProtocolError, UnknownProfileError
from cds_service.report import render
from cds_service.safe_log import where_raised

STDIN = "-"


class InputError(Exception):
    pass


@dataclass(frozen=True)
class Record:
    resources: list[Mapping[str, Any]]
    patient_id: str | None
    draft_orders: tuple[Mapping[str, Any], ...]
    #: Bundle `fullUrl` -> resource, for references between the record's resources.
    full_urls: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def _read_json(path: str) -> tuple[str, Any]:
    """(name for messages, parsed JSON) of `path`, or of standard input for `-`."""
    name = "standard input" if path == STDIN else path
    try:
        text = sys.stdin.read() if path == STDIN else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read {name}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InputError(f"{name} is not UTF-8 text") from None
    try:
        return name, json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{name} is not JSON (line {exc.lineno})") from None


def _bundle_record(name: str, data: dict[str, Any]) -> Record:
    try:
        Bundle.model_validate(data)
    except (ValidationError, ValueError) as exc:
        count = len(exc.errors()) if isinstance(exc, ValidationError) else 1
        raise InputError(f"{name} is not a valid FHIR R4 Bundle ({count} error(s))") from None
    return Record(list(bundle_resources(data)), None, (), full_urls_of(data))


def _hook_record(name: str, data: dict[str, Any]) -> Record:
    """The record a CDS Hooks request carries in its prefetch (nothing is fetched)."""
    try:
        request = parse_hook_request(data, str(data.get("hook")))
        resolved = asyncio.run(resolve(request, None))
    except (RequestError, PrefetchError) as exc:
        raise InputError(f"{name}: {exc}") from None
    except MissingPrefetch as exc:
        missing = "; ".join(f"{k}: {v}" for k, v in sorted(exc.details.items()))
        raise InputError(f"{name}: required prefetch missing: {missing}") from None
    return Record(
        list(resolved.resources),
        resolved.patient_id,
        tuple(resolved.draft_orders),
        resolved.scope.full_urls,
    )


def load_record(path: str) -> Record:
    """A FHIR Bundle or a CDS Hooks request (recognised by its `hook` and `hookInstance`)."""
    name, data = _read_json(path)
    if isinstance(data, Mapping) and data.get("resourceType") == "Bundle":
        return _bundle_record(name, dict(data))
    if isinstance(data, Mapping) and "hook" in data and "hookInstance" in data:
        return _hook_record(name, dict(data))
    raise InputError(f"{name} is neither a FHIR Bundle nor a CDS Hooks request")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="b12-cds", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    plan = sub.add_parser("plan", help="assess one patient's record and print the schedule")
    plan.add_argument(
        "record",
        help="a FHIR R4 Bundle or a CDS Hooks request (JSON) for one patient; - for stdin",
    )
    plan.add_argument("--profile", default=None, help="protocol profile (default: standard)")
    plan.add_argument("--start", type=date.fromisoformat, default=None, help="YYYY-MM-DD")
    plan.add_argument("--json", action="store_true", help="print the MedicationRequests as JSON")
    db = sub.add_parser("db", help="the state database (CDS_DATA_DIR or CDS_DATABASE_URL)")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply the migrations")
    db_sub.add_parser(
        "purge",
        help="delete audit records and feedback older than CDS_AUDIT_RETENTION_DAYS, "
        "dead replay-protection rows and the once-per-hook-instance rows of ended sessions",
    )
    return parser


def _db(command: str) -> int:
    """Run a database command; one line on stderr and status 2 when it cannot."""
    import asyncio
    from datetime import UTC, datetime

    from cds_service.settings import Settings, SettingsError
    from cds_service.store import Store

    try:
        # The database settings only: the service's other settings are not needed here.
        settings = Settings.from_env({**os.environ, "CDS_AUTH": "off"})
        store = Store(settings)
        store.open()
        if command == "upgrade":
            print(f"b12-cds: database at the current schema ({store.target.shown()})")
            return 0

        async def purge() -> dict[str, int]:
            try:
                return await store.purge(datetime.now(UTC))
            finally:
                await store.database.dispose()

        counts = asyncio.run(purge())
    except SettingsError as exc:
        print(f"b12-cds: {exc}", file=sys.stderr)
        return 2
    print("b12-cds: purged " + ", ".join(f"{n} {what}" for what, n in counts.items()))
    return 0


def _plan(args: argparse.Namespace) -> int:
    try:
        engine = Engine.build()
        record = load_record(args.record)
        start = args.start or date.today()
        plan = engine.plan(
            record.resources,
            start=start,
            profile=args.profile,
            patient_id=record.patient_id,
            draft_orders=record.draft_orders,
            full_urls=record.full_urls,
        )
    except (InputError, InvalidResourceError, UnknownProfileError, ProtocolError) as exc:
        print(f"b12-cds: {exc}", file=sys.stderr)
        return 2
    if args.json:
        series = engine.medication_requests(plan)
        print(
            json.dumps(
                series.get(plan.recommended.regimen_id, []) if plan.recommended else [], indent=2
            )
        )
    else:
        print(render(plan))
    sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        return _db(args.db_command) if args.command == "db" else _plan(args)
    except BrokenPipeError:
        # The reader went away (`| head`): nothing more to say, and nothing to say it to.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # as a tool killed by SIGPIPE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # Type and place only: a message could quote the record.
        print(f"b12-cds: internal error: {where_raised(exc)}", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
