"""CDS Hooks 2.0 request bodies: the hook request and the feedback request.

Validation messages name the field and the problem, never the value sent (it may be PHI).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

MAX_ID_CHARS = 256


class RequestError(ValueError):
    """The request is not a valid CDS Hooks request (answered with 400)."""


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)


class FhirAuthorization(_Model):
    access_token: str = Field(min_length=1)
    token_type: str
    expires_in: int
    scope: str
    subject: str
    patient: str | None = None


class HookRequest(_Model):
    hook: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    hookInstance: str = Field(min_length=1, max_length=MAX_ID_CHARS)  # noqa: N815 - CDS Hooks
    fhirServer: str | None = Field(default=None, max_length=2048)  # noqa: N815
    fhirAuthorization: FhirAuthorization | None = None  # noqa: N815
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None
    extension: dict[str, Any] | None = None

    @field_validator("fhirServer")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value


class Coding(_Model):
    system: str | None = Field(default=None, max_length=MAX_ID_CHARS)
    code: str | None = Field(default=None, max_length=MAX_ID_CHARS)
    display: str | None = Field(default=None, max_length=1024)


class OverrideReason(_Model):
    reason: Coding | None = None
    userComment: str | None = Field(default=None, max_length=4096)  # noqa: N815


class AcceptedSuggestion(_Model):
    id: str = Field(min_length=1, max_length=MAX_ID_CHARS)


class Feedback(_Model):
    card: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[AcceptedSuggestion] | None = None  # noqa: N815
    overrideReason: OverrideReason | None = None  # noqa: N815
    outcomeTimestamp: str = Field(min_length=1, max_length=64)  # noqa: N815

    @model_validator(mode="after")
    def _accepted_needs_suggestions(self) -> Feedback:
        if self.outcome == "accepted" and not self.acceptedSuggestions:
            raise ValueError("acceptedSuggestions is required for an accepted outcome")
        return self


class FeedbackRequest(_Model):
    feedback: list[Feedback] = Field(min_length=1, max_length=1000)


def describe(exc: ValidationError) -> str:
    """The first few problems as `field.path: message`, without the input values."""
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def parse_hook_request(body: Any, hook: str) -> HookRequest:
    """Validate the request envelope and the `hook`-specific context; raise RequestError."""
    if not isinstance(body, Mapping):
        raise RequestError("the request body must be a JSON object")
    try:
        request = HookRequest.model_validate(body)
    except ValidationError as exc:
        raise RequestError(describe(exc)) from None
    if request.hook != hook:
        raise RequestError(f"hook must be {hook!r} for this service")
    if request.fhirAuthorization is not None and request.fhirServer is None:
        raise RequestError("fhirServer is required when fhirAuthorization is given")
    check_context(request.context, hook)
    return request


def _id_field(context: Mapping[str, Any], name: str, *, required: bool) -> None:
    value = context.get(name)
    if value is None:
        if required:
            raise RequestError(f"context.{name} is required")
        return
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID_CHARS:
        raise RequestError(f"context.{name} must be a non-empty string")


def _bundle(context: Mapping[str, Any], name: str) -> None:
    bundle = context.get(name)
    if bundle is None:
        raise RequestError(f"context.{name} is required")
    if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
        raise RequestError(f"context.{name} must be a FHIR Bundle")
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise RequestError(f"context.{name}.entry must be an array")
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise RequestError(f"context.{name}.entry[{i}] must be an object")
        resource = entry.get("resource")
        if resource is not None and (
            not isinstance(resource, Mapping) or not isinstance(resource.get("resourceType"), str)
        ):
            raise RequestError(f"context.{name}.entry[{i}].resource must be a FHIR resource")
        if resource is not None and not isinstance(resource.get("status", ""), str):
            raise RequestError(f"context.{name}.entry[{i}].resource.status must be a code")


def check_context(context: Mapping[str, Any], hook: str) -> None:
    _id_field(context, "patientId", required=True)
    if "/" in str(context["patientId"]):
        raise RequestError("context.patientId must be a FHIR id, not a reference")
    _id_field(context, "userId", required=False)
    _id_field(context, "encounterId", required=False)
    if hook == "order-select":
        selections = context.get("selections")
        if not isinstance(selections, list) or not all(
            isinstance(s, str) and s for s in selections
        ):
            raise RequestError("context.selections must be an array of references")
        _bundle(context, "draftOrders")
    elif hook == "order-sign":
        _bundle(context, "draftOrders")
