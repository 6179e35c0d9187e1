"""Calls whose record comes from the loopback FHIR server through the fallback fetch.

One way to point a hook request at the `fhir_server` fixture and to build an app whose fetcher
may call it, shared by every test of the fallback fetch (answers, errors, memory budget).
"""

from __future__ import annotations

import copy
from typing import Any

from fhirserver import FhirTestServer
from support import isolated_settings

from cds_service.app import create_app
from cds_service.fetch import Allowlist, FhirFetcher

from .helpers import START, client

PV = "/cds-services/b12-patient-view"


def fetching_app(allowlist: Allowlist, profile: str | None = None, **kw: Any) -> Any:
    """An app (auth off) and its fetcher; `kw` goes to FhirFetcher (timeouts, budget)."""
    fetcher = FhirFetcher(allowlist, **kw)
    settings = isolated_settings(auth=False, profile=profile)
    return create_app(settings, fetcher=fetcher, clock=lambda: START), fetcher


def without_prefetch(body: dict[str, Any], server: FhirTestServer, *keep: str) -> dict[str, Any]:
    """`body` with only the prefetch keys `keep`, pointing at `server` with its token."""
    body = copy.deepcopy(body)
    body["prefetch"] = {k: v for k, v in body["prefetch"].items() if k in keep}
    body["fhirServer"] = server.base_url
    body["fhirAuthorization"] = {
        "access_token": server.token,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "b12-cds",
    }
    return body


async def post(app: Any, body: dict[str, Any]) -> Any:
    async with client(app, signed=False) as c:
        return await c.post(PV, json=body)


async def post_fetching(body: dict[str, Any], allowlist: Allowlist | None = None, **kw: Any) -> Any:
    """One patient-view call to an app whose fetcher may call loopback servers by default."""
    app, fetcher = fetching_app(allowlist or Allowlist(allow_loopback=True), **kw)
    try:
        return await post(app, body)
    finally:
        await fetcher.aclose()
