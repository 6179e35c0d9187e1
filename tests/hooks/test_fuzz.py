"""No input makes the service answer 500 or anything but JSON."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .helpers import client, golden_request

PATHS = [
    "/cds-services/b12-patient-view",
    "/cds-services/b12-order-sign",
    "/cds-services/b12-order-select",
    "/cds-services/b12-patient-view/feedback",
]
BASES = [
    golden_request("t6-unspecified-low-b12", "patient-view"),
    golden_request("s2-draft-iv-cyanocobalamin", "order-sign"),
    golden_request("s7-duplicate-draft-on-therapy", "order-sign"),
]

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
KEYS = [
    "hook", "hookInstance", "context", "prefetch", "fhirServer", "fhirAuthorization",
    "patientId", "userId", "draftOrders", "selections", "entry", "resource", "resourceType",
    "status", "valueQuantity", "value", "code", "coding", "feedback", "card", "outcome",
]  # fmt: skip


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    body = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(body) if p]
        path = draw(st.sampled_from(paths))
        parent = body
        for step in path[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "replace":
            parent[path[-1]] = draw(json_values)
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS))] = draw(json_values)
    return body


def _post(path: str, content: bytes) -> tuple[int, str, str]:
    async def go() -> tuple[int, str, str]:
        async with client() as c:
            r = await c.post(path, content=content, headers={"content-type": "application/json"})
        return r.status_code, r.headers.get("content-type", ""), r.text

    return asyncio.run(go())


def _check(status: int, content_type: str, text: str) -> None:
    assert status != 500 and status < 500, text[:500]
    assert content_type.startswith("application/json")
    body = json.loads(text)
    # The engine's last-resort 400 is for gaps in the request checks: fuzzing must not find one.
    assert "could not be read" not in str(body), text[:500]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), body=mutated())
def test_mutated_golden_requests(path: str, body: Any) -> None:
    _check(*_post(path, json.dumps(body).encode()))


@settings(max_examples=150, deadline=None)
@given(
    path=st.sampled_from(PATHS),
    body=st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), json_values, max_size=6),
)
def test_random_json(path: str, body: Any) -> None:
    _check(*_post(path, json.dumps(body).encode()))


@settings(max_examples=60, deadline=None)
@given(path=st.sampled_from(PATHS), raw=st.binary(max_size=200))
def test_random_bytes(path: str, raw: bytes) -> None:
    _check(*_post(path, raw))
