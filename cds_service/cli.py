"""`b12-cds plan BUNDLE`: the clinical answer for a FHIR Bundle, without a server.

Bad input ends with one line on stderr and a non-zero exit, never a traceback: the CLI is used in
scripts and by clinicians checking a record.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

from cds_service.clinical.extract import InvalidResourceError
from cds_service.engine import Engine, bundle_resources
from cds_service.protocol import ProtocolError, UnknownProfileError
from cds_service.report import render


class InputError(Exception):
    pass


def _load_bundle(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not JSON (line {exc.lineno})") from None
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise InputError(f"{path} is not a FHIR Bundle")
    try:
        Bundle.model_validate(data)
    except (ValidationError, ValueError) as exc:
        count = len(exc.errors()) if isinstance(exc, ValidationError) else 1
        raise InputError(f"{path} is not a valid FHIR R4 Bundle ({count} error(s))") from None
    return data


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="b12-cds", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    plan = sub.add_parser("plan", help="assess a patient Bundle and print the schedule")
    plan.add_argument("bundle", help="path to a FHIR R4 Bundle (JSON) holding one patient")
    plan.add_argument("--profile", default=None, help="protocol profile (default: standard)")
    plan.add_argument("--start", type=date.fromisoformat, default=None, help="YYYY-MM-DD")
    plan.add_argument("--json", action="store_true", help="print the MedicationRequests as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        engine = Engine.build()
        bundle = _load_bundle(args.bundle)
        start = args.start or date.today()
        plan = engine.plan(bundle_resources(bundle), start=start, profile=args.profile)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
