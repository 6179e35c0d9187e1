"""The OpenAPI description's schemas: what each route takes and answers, for integrators.

They are declared in the routes' metadata only: requests are still read and checked by the
service's own code (cds_service.hooks.models, the plan operation's parser), so describing
them costs the hot path nothing. The hook and feedback request schemas are generated from the
models that check them; the answers are written out here.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from cds_service.hooks.models import FeedbackRequest, HookRequest

JSON = dict[str, Any]
REF = "#/components/schemas/{model}"


def ref(name: str) -> JSON:
    return {"$ref": REF.format(model=name)}


_STRING = {"type": "string"}
_CODING = {
    "type": "object",
    "properties": {"system": _STRING, "code": _STRING, "display": _STRING},
}
_LINK = {
    "type": "object",
    "required": ["label", "url", "type"],
    "properties": {
        "label": _STRING,
        "url": _STRING,
        "type": {"type": "string", "enum": ["absolute", "smart"]},
        "appContext": _STRING,
    },
}
_ACTION = {
    "type": "object",
    "required": ["type", "description"],
    "properties": {
        "type": {"type": "string", "enum": ["create", "update", "delete"]},
        "description": _STRING,
        "resource": {"type": "object", "description": "a FHIR R4 resource"},
        "resourceId": _STRING,
    },
}
_CARD = {
    "type": "object",
    "required": ["summary", "indicator", "source"],
    "properties": {
        "uuid": _STRING,
        "summary": {"type": "string", "maxLength": 140},
        "detail": {"type": "string", "description": "GitHub-flavoured Markdown"},
        "indicator": {"type": "string", "enum": ["info", "warning", "critical"]},
        "source": {
            "type": "object",
            "required": ["label"],
            "properties": {"label": _STRING, "url": _STRING, "topic": _CODING},
        },
        "suggestions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["label"],
                "properties": {
                    "label": _STRING,
                    "uuid": _STRING,
                    "isRecommended": {"type": "boolean"},
                    "actions": {"type": "array", "items": _ACTION},
                },
            },
        },
        "selectionBehavior": {"type": "string", "enum": ["at-most-one", "any"]},
        "overrideReasons": {"type": "array", "items": _CODING},
        "links": {"type": "array", "items": _LINK},
        "extension": {
            "type": "object",
            "description": "card kind, the rule ids that fired, profile and protocol versions",
            "properties": {
                "card": _STRING,
                "rules": {"type": "array", "items": _STRING},
                "profile": _STRING,
                "profileVersion": _STRING,
                "protocol": _STRING,
                "protocolVersion": _STRING,
                "status": _STRING,
            },
        },
    },
}

SCHEMAS: dict[str, JSON] = {
    "CdsServiceResponse": {
        "type": "object",
        "required": ["cards"],
        "properties": {"cards": {"type": "array", "items": _CARD}},
    },
    "Discovery": {
        "type": "object",
        "required": ["services"],
        "properties": {
            "services": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "hook", "description"],
                    "properties": {
                        "id": _STRING,
                        "hook": _STRING,
                        "title": _STRING,
                        "description": _STRING,
                        "prefetch": {"type": "object", "additionalProperties": _STRING},
                        "usageRequirements": _STRING,
                    },
                },
            }
        },
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["status", "message"],
                "properties": {
                    "status": {"type": "integer"},
                    "message": _STRING,
                    "missing": {
                        "type": "array",
                        "items": _STRING,
                        "description": "412: the prefetch keys that could not be had",
                    },
                    "reasons": {
                        "type": "object",
                        "additionalProperties": _STRING,
                        "description": "412: why, per key",
                    },
                },
            }
        },
    },
    "FhirResource": {
        "type": "object",
        "required": ["resourceType"],
        "properties": {"resourceType": _STRING},
        "description": "A FHIR R4 resource (an OperationOutcome for errors)",
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": _STRING, "protocol": {"type": "object"}},
    },
    "Readiness": {
        "type": "object",
        "required": ["status", "checks"],
        "properties": {
            "status": {"type": "string", "enum": ["ready", "not ready"]},
            "checks": {"type": "object", "additionalProperties": _STRING},
            "reasons": {"type": "array", "items": _STRING},
        },
    },
}

ERRORS = {
    400: "malformed request (the message names the element path)",
    401: "no valid CDS client JWT",
    404: "unknown CDS service",
    412: "required FHIR data missing from the prefetch and not fetchable",
    413: "request too large",
}


def json_body(name: str, description: str) -> JSON:
    return {"description": description, "content": {"application/json": {"schema": ref(name)}}}


def error_responses(*statuses: int) -> dict[int | str, JSON]:
    return {s: json_body("Error", ERRORS[s]) for s in statuses}


def request_body(name: str, media_type: str = "application/json") -> JSON:
    return {"requestBody": {"required": True, "content": {media_type: {"schema": ref(name)}}}}


def fhir_body(description: str) -> JSON:
    return {
        "description": description,
        "content": {"application/fhir+json": {"schema": ref("FhirResource")}},
    }


def _components() -> dict[str, JSON]:
    schemas = dict(SCHEMAS)
    for model in (HookRequest, FeedbackRequest):
        generated = model.model_json_schema(ref_template=REF)
        schemas.update(generated.pop("$defs", {}))
        schemas[model.__name__] = generated
    return schemas


def install(app: FastAPI) -> None:
    """Serve the description with the schemas the routes refer to (built on first request)."""

    def openapi() -> JSON:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            document.setdefault("components", {}).setdefault("schemas", {}).update(_components())
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
