"""Card preview for developers and operators: a golden patient or a pasted Bundle, as cards.

Runs the same engine and card builder as the hooks, then turns each card into what a side
panel shows (summary, detail markdown as HTML, suggestion labels, links, source). The card
markdown is rendered with raw HTML disabled, so a card (or a pasted record) cannot inject
markup into the page.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import orjson
from markdown_it import MarkdownIt
from markupsafe import Markup

from cds_service.clinical.extract import InvalidResourceError
from cds_service.engine import Engine, bundle_resources
from cds_service.hooks.cards import CardBuilder, HookContext

GOLDEN_PATIENTS = Path(__file__).resolve().parents[2] / "fhir_examples" / "patients"
HOOKS = ("patient-view", "order-select", "order-sign")
_DRAFT_TYPES = {"MedicationRequest", "ServiceRequest"}
_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


class PreviewInputError(ValueError):
    """The chosen patient or pasted Bundle cannot be previewed; the message says why."""


@dataclass(frozen=True)
class ShownCard:
    indicator: str
    summary: str
    detail_html: Markup
    suggestions: tuple[Mapping[str, Any], ...]
    links: tuple[Mapping[str, Any], ...]
    source_label: str
    topic: str


def golden_patients(folder: Path = GOLDEN_PATIENTS) -> list[str]:
    """The golden patients shipped beside the service (none where the folder is absent)."""
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json") if not p.name.endswith(".expected.json"))


def read_bundle(patient: str, pasted: str, folder: Path = GOLDEN_PATIENTS) -> Mapping[str, Any]:
    if patient:
        if patient not in golden_patients(folder):
            raise PreviewInputError("unknown golden patient")
        raw = (folder / f"{patient}.json").read_bytes()
    elif pasted.strip():
        raw = pasted.encode("utf-8")
    else:
        raise PreviewInputError("choose a golden patient or paste a Bundle")
    try:
        bundle = orjson.loads(raw)
    except ValueError:
        raise PreviewInputError("the pasted text is not JSON") from None
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise PreviewInputError("the pasted JSON is not a FHIR Bundle")
    return bundle


def _patient_id(resources: Sequence[Mapping[str, Any]]) -> str:
    for r in resources:
        if r.get("resourceType") == "Patient" and isinstance(r.get("id"), str):
            return str(r["id"])
    raise PreviewInputError("the Bundle holds no Patient with an id")


def preview_cards(
    engine: Engine,
    builder: CardBuilder,
    bundle: Mapping[str, Any],
    *,
    hook: str,
    profile: str | None,
    today: date,
) -> list[dict[str, Any]]:
    """The cards the hook would answer for this record (drafts in the Bundle are the orders)."""
    if hook not in HOOKS:
        raise PreviewInputError("unknown hook")
    resources = bundle_resources(bundle)
    patient_id = _patient_id(resources)
    drafts = tuple(
        r
        for r in resources
        if hook != "patient-view"
        and r.get("resourceType") in _DRAFT_TYPES
        and r.get("status") == "draft"
    )
    try:
        plan = engine.plan(
            resources, start=today, profile=profile, patient_id=patient_id, draft_orders=drafts
        )
    except InvalidResourceError as exc:
        raise PreviewInputError(str(exc)) from None
    except (TypeError, ValueError, KeyError, AttributeError):
        raise PreviewInputError("a resource in the Bundle could not be read") from None
    series = engine.medication_requests(plan, authored_on=today)
    ctx = HookContext(hook=hook, patient_id=patient_id, draft_orders=drafts, authored_on=today)
    return builder.cards(plan, series, ctx, new_id=lambda: str(uuid.uuid4()))


def shown(card: Mapping[str, Any]) -> ShownCard:
    """What a side panel shows of one card."""
    source = card.get("source") or {}
    topic = (source.get("topic") or {}).get("display", "")
    return ShownCard(
        indicator=str(card.get("indicator", "info")),
        summary=str(card.get("summary", "")),
        detail_html=Markup(_MARKDOWN.render(str(card.get("detail") or ""))),
        suggestions=tuple(card.get("suggestions") or ()),
        links=tuple(card.get("links") or ()),
        source_label=str(source.get("label", "")),
        topic=str(topic),
    )
