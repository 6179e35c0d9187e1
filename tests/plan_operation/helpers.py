"""Shared pieces of the plan-operation tests: the app under test and the Parameters body."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import FastAPI

from cds_service.engine import Engine
from cds_service.plan_operation.router import build_router

START = date(2026, 12, 1)
ENGINE = Engine.build()
FHIR_JSON = "application/fhir+json"


def make_app(engine: Engine | None = None, **state: object) -> FastAPI:
    """A bare app with only this router mounted, as the lead will mount it."""
    app = FastAPI()
    app.include_router(build_router(engine or ENGINE))
    app.state.clock = lambda: START
    for key, value in state.items():
        setattr(app.state, key, value)
    return app


def parameters(
    subject: str | None = "Patient/p1",
    data: dict[str, Any] | None = None,
    **extra: str,
) -> dict[str, Any]:
    params: list[dict[str, Any]] = []
    if subject is not None:
        params.append({"name": "subject", "valueString": subject})
    if data is not None:
        params.append({"name": "data", "resource": data})
    for name, value in extra.items():
        params.append({"name": name, "valueString": value})
    return {"resourceType": "Parameters", "parameter": params}


def patient_id(bundle: dict[str, Any]) -> str:
    return next(
        str(e["resource"]["id"])
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Patient"
    )
