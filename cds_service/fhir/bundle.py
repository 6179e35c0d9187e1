"""FHIR searchset Bundles, for every search this service answers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

JSON = dict[str, Any]


def searchset(
    base: str,
    resources: Sequence[JSON],
    *,
    self_url: str,
    total: int | None = None,
    next_url: str | None = None,
    previous_url: str | None = None,
) -> JSON:
    """`base` is the FHIR base URL the entries' fullUrl hang off (`.../fhir`)."""
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    if previous_url:
        links.append({"relation": "previous", "url": previous_url})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources) if total is None else total,
        "link": links,
        "entry": [
            {
                "fullUrl": f"{base}/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ],
    }
