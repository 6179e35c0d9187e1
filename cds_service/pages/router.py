"""Routes of the pages: /protocol, /schedule (and its .ics), /preview when enabled.

HTML is rendered on the server from Jinja2 templates packaged with the service; a page loads
nothing else (its CSS is inline and the Content-Security-Policy allows no other source), so
it works offline. Bad query parameters answer 400 as JSON, like every other error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from cds_service.engine import Engine
from cds_service.fhir.dosage_text import duration_phrase, frequency_phrase
from cds_service.hooks.cards import CardBuilder
from cds_service.pages.ics import ics
from cds_service.pages.preview import (
    HOOKS,
    PreviewInputError,
    golden_patients,
    preview_cards,
    read_bundle,
    shown,
)
from cds_service.pages.schedule import (
    ScheduleQuery,
    ScheduleQueryError,
    build_schedule,
    parse_query,
    regimens_of,
)
from cds_service.pages.timeline import timeline
from cds_service.plan_operation.artifacts import when_text

TEMPLATES = Path(__file__).parent / "templates"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class PagesConfig:
    engine: Engine
    cards: CardBuilder
    #: The service's active profile (CDS_PROFILE); None for the protocol default.
    profile: str | None
    #: CDS_PREVIEW: serve /preview (dev and operator use).
    preview: bool
    clock: Callable[[], date]
    max_body_bytes: int


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(frequency=frequency_phrase, duration=duration_phrase)
    return env


def build_pages_router(config: PagesConfig) -> APIRouter:
    router = APIRouter()
    env = _environment()
    protocol = config.engine.protocol
    active = config.profile or protocol.profiles.default

    def page(name: str, status: int = 200, **values: Any) -> HTMLResponse:
        html = env.get_template(name).render(
            base="", preview_enabled=config.preview, protocol=protocol, **values
        )
        headers = dict(SECURITY_HEADERS)
        if name == "preview.html":
            headers["Cache-Control"] = "no-store"  # a pasted record must not be cached
        return HTMLResponse(html, status_code=status, headers=headers)

    @router.get("/protocol", response_class=HTMLResponse, include_in_schema=False)
    async def protocol_page(profile: str | None = None) -> HTMLResponse:
        name = profile or active
        if name not in protocol.profiles.profiles:
            raise HTTPException(
                400, f"unknown profile; known: {', '.join(protocol.profiles.profiles)}"
            )
        prof = protocol.profiles.profiles[name]
        seen: set[str] = set()
        rows = []
        for rr in prof.regimen_rules:
            rows.append((rr, None if rr.id in seen else rr.id))
            seen.add(rr.id)
        today = config.clock()

        def example_query(regimen_id: str) -> str:
            return ScheduleQuery(regimen_id, name, today, lifelong=True).query_string()

        return page(
            "protocol.html",
            profile_name=name,
            profile=prof,
            active=active,
            review=duration_phrase(prof.maintenance_review),
            regimen_rows=rows,
            regimen_ids=regimens_of(prof),
            when_text=lambda expr: when_text(expr, protocol),
            example_query=example_query,
            maintenance_note=protocol.rules.maintenance_note,
        )

    def schedule_of(request: Request) -> Any:
        try:
            query = parse_query(dict(request.query_params), protocol, config.profile)
        except ScheduleQueryError as exc:
            raise HTTPException(400, str(exc)) from None
        return build_schedule(protocol, query)

    @router.get("/schedule", response_class=HTMLResponse, include_in_schema=False)
    async def schedule_page(request: Request) -> HTMLResponse:
        view = schedule_of(request)
        return page(
            "schedule.html",
            view=view,
            tl=timeline(view),
            ics_url=f"/schedule.ics?{view.query.query_string()}",
            maintenance_note=protocol.rules.maintenance_note,
        )

    @router.get("/schedule.ics", include_in_schema=False)
    async def schedule_ics(request: Request) -> Response:
        view = schedule_of(request)
        return Response(
            ics(view, now=datetime.now(UTC)),
            media_type="text/calendar; charset=utf-8",
            headers={
                "Content-Disposition": 'attachment; filename="b12-schedule.ics"',
                "X-Content-Type-Options": "nosniff",
            },
        )

    if not config.preview:
        return router

    def preview_page(status: int = 200, **values: Any) -> HTMLResponse:
        defaults: dict[str, Any] = {
            "cards": None,
            "error": None,
            "chosen": "",
            "hook": HOOKS[0],
            "profile": active,
        }
        return page(
            "preview.html",
            status,
            patients=golden_patients(),
            hooks=HOOKS,
            profiles=list(protocol.profiles.profiles),
            active=active,
            **{**defaults, **values},
        )

    @router.get("/preview", response_class=HTMLResponse, include_in_schema=False)
    async def preview_form() -> HTMLResponse:
        return preview_page()

    @router.post("/preview", response_class=HTMLResponse, include_in_schema=False)
    async def preview_submit(request: Request) -> HTMLResponse:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > config.max_body_bytes:
                raise HTTPException(413, f"request body exceeds {config.max_body_bytes} bytes")
        form = dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
        chosen, hook = form.get("patient", ""), form.get("hook", HOOKS[0])
        # A golden patient may be written for another profile (nice-ng239): the operator picks
        # it, and the cards say which profile answered.
        profile = form.get("profile") or active
        if profile not in protocol.profiles.profiles:
            return preview_page(400, error="unknown profile", chosen=chosen, hook=hook)
        try:
            bundle = read_bundle(chosen, form.get("bundle", ""))
            cards = preview_cards(
                config.engine,
                config.cards,
                bundle,
                hook=hook,
                profile=profile,
                today=config.clock(),
            )
        except PreviewInputError as exc:
            return preview_page(400, error=str(exc), chosen=chosen, hook=hook, profile=profile)
        return preview_page(
            cards=[shown(c) for c in cards], chosen=chosen, hook=hook, profile=profile
        )

    return router
