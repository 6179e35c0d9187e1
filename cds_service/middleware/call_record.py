"""What the routes tell the log and metrics middleware about a call, beyond its status.

The routes fill the record in (`call_record(request)`); the middleware reads it when the
answer has been sent. It holds only what may be logged: ids the client chose for the call,
rule ids, counts, and reasons built by the service from fixed phrases and element paths,
never values from the record or tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.types import Scope

_KEY = "call_record"


@dataclass
class CallRecord:
    #: The CDS service id, once the path named a known service.
    service: str | None = None
    hook_instance: str | None = None
    #: (card kind, rule ids) of each card answered.
    cards: list[tuple[str, tuple[str, ...]]] | None = None
    #: Why a 4xx or 5xx was answered, in words.
    reason: str | None = None
    #: Why a prefetch key could not be had (412), per key.
    unavailable: dict[str, str] = field(default_factory=dict)
    #: The issuer of the verified client JWT.
    client_iss: str | None = None
    #: Why the bearer token was refused (401), for the log only.
    auth_refusal: str | None = None
    #: Feedback outcomes received (accepted, overridden).
    feedback: list[str] = field(default_factory=list)


def record_of_scope(scope: Scope) -> CallRecord:
    state: dict[str, Any] = scope.setdefault("state", {})
    record = state.get(_KEY)
    if not isinstance(record, CallRecord):
        record = state[_KEY] = CallRecord()
    return record


def call_record(request: Request) -> CallRecord:
    return record_of_scope(request.scope)
