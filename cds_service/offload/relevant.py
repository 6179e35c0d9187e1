"""A Bundle cut down to the entries the rules can read (`FactExtractor.relevant`).

What the reading process sends back for a large Bundle. `extract(relevant(r))` gives the same
Facts as `extract(r)`, and cutting parts of a record one by one keeps every entry that
cutting the whole would keep (each analyte's newest results down to the deciding one are
among its part's newest), so a record cut down per prefetch key, per page or per `data`
Bundle is answered as the whole would be.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from functools import cache
from typing import Any

from cds_service.clinical.extract import FactExtractor
from cds_service.clinical.raw import OBJECT
from cds_service.protocol import default_protocol


@cache
def extractor() -> FactExtractor:
    return FactExtractor(default_protocol())


def warm() -> None:
    """Read the tables now, in the child, rather than on its first input."""
    extractor()


def relevant_bundle(value: Any, today: date, *, also: Iterable[Any] = ()) -> Any:
    """A Bundle with only its relevant entries and those of the resources `also` (in their
    order); anything else as it is."""
    if not isinstance(value, OBJECT) or value.get("resourceType") != "Bundle":
        return value
    entries = value.get("entry")
    if not isinstance(entries, list):
        return value
    resources = [e["resource"] for e in entries if isinstance(e, OBJECT) and "resource" in e]
    kept = {id(r) for r in (*extractor().relevant(resources, today=today), *also)}
    return {
        **value,
        "entry": [e for e in entries if isinstance(e, OBJECT) and id(e.get("resource")) in kept],
    }
