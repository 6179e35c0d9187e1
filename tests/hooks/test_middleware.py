"""Headers every answer carries: the request id and the no-cache / no-sniff pair."""

from __future__ import annotations

import pytest

from .helpers import client, golden_request

pytestmark = pytest.mark.anyio

PV = "/cds-services/b12-patient-view"


async def test_a_usable_request_id_from_the_caller_is_returned_as_given() -> None:
    async with client() as c:
        r = await c.post(
            PV,
            json=golden_request("t6-unspecified-low-b12", "patient-view"),
            headers={"X-Request-ID": "ehr-42.a:b"},
        )
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "ehr-42.a:b"


@pytest.mark.parametrize("given", [None, "", "two words", "x" * 129, "tab\there"])
async def test_a_missing_or_unusable_request_id_is_replaced_by_a_new_one(given: str | None) -> None:
    headers = {} if given is None else {"X-Request-ID": given}
    async with client() as c:
        first = await c.get("/cds-services", headers=headers)
        second = await c.get("/cds-services", headers=headers)
    ids = {first.headers["x-request-id"], second.headers["x-request-id"]}
    assert len(ids) == 2 and all(len(i) == 32 and i.isalnum() for i in ids)


@pytest.mark.parametrize("path", ["/cds-services", "/health", "/no-such-route"])
async def test_answers_are_not_cached_nor_sniffed(path: str) -> None:
    async with client() as c:
        r = await c.get(path)
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-content-type-options"] == "nosniff"


async def test_errors_carry_the_request_id_too() -> None:
    async with client(signed=False) as c:
        r = await c.post(PV, json={}, headers={"X-Request-ID": "call-401"})
    assert r.status_code == 401
    assert r.headers["x-request-id"] == "call-401"
