"""The fallback fetch over keep-alive connections the FHIR server has closed.

Through HTTP: a hook call whose record is fetched from the loopback FHIR server, behind a proxy
that closes connections unanswered as a server closing its idle connections does."""

from __future__ import annotations

from typing import Any

import pytest
from fhirserver import FhirTestServer
from fhirserver.closing_proxy import ClosingProxy

from cds_service.fetch import Allowlist
from cds_service.hooks.prefetch_templates import PREFETCH

from .fetching import fetching_app, post, without_prefetch
from .helpers import golden_request
from .test_fallback_fetch import clinical

pytestmark = pytest.mark.anyio
SLUG = "t6-unspecified-low-b12"


def fetched_through(server: FhirTestServer, base_url: str) -> dict[str, Any]:
    """The golden request with every prefetch key left to the fetch, from `base_url`."""
    body = without_prefetch(golden_request(SLUG, "patient-view"), server)
    body["fhirServer"] = base_url
    return body


async def test_a_closed_pooled_connection_is_retried_on_a_new_one(
    fhir_server: FhirTestServer,
) -> None:
    app, fetcher = fetching_app(Allowlist(allow_loopback=True))
    try:
        direct = await post(app, fetched_through(fhir_server, fhir_server.base_url))
        assert direct.status_code == 200, direct.text
        async with ClosingProxy(fhir_server, "reused") as proxy:
            body = fetched_through(fhir_server, proxy.base_url)
            first = await post(app, body)  # fills the pool with connections to the proxy
            assert first.status_code == 200, first.text
            # Every pooled connection is now one the server will close on the next request.
            again = await post(app, body)
            assert proxy.dropped > 0, "no request met a closed connection"
    finally:
        await fetcher.aclose()
    assert again.status_code == 200, again.text
    assert clinical(again.json()["cards"]) == clinical(direct.json()["cards"])


async def test_one_retry_then_the_key_is_unavailable(fhir_server: FhirTestServer) -> None:
    app, fetcher = fetching_app(Allowlist(allow_loopback=True))
    body = without_prefetch(golden_request(SLUG, "patient-view"), fhir_server, "patient")
    try:
        async with ClosingProxy(fhir_server, "all") as proxy:
            body["fhirServer"] = proxy.base_url
            r = await post(app, body)
    finally:
        await fetcher.aclose()
    assert r.status_code == 412, r.text
    reasons = r.json()["error"]["reasons"]
    assert reasons["observations"] == (
        "HTTP error talking to the FHIR server (ServerDisconnectedError)"
    )
    # Each query was sent twice (the first attempt and one retry), never more.
    assert proxy.dropped == 2 * len(set(PREFETCH) - set(body["prefetch"]))
