"""Resected bowel length, read from a Procedure's words or a length quantity (T3 amended).

ICD-10-CM and SNOMED CT cannot say how much ileum was removed, yet "more than 20 cm" decides
whether B12 is needed for life. The length arrives as text (bodySite, note) or as an
Observation quantity; a reading that could be the *remaining* bowel is not taken as resected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from cds_service.protocol.model import ResectedLength

_NUMBER = r"(\d+(?:[.,]\d+)?)\s*"


def _pattern(spec: ResectedLength) -> re.Pattern[str]:
    units = "|".join(sorted((re.escape(u) for u in spec.units), key=len, reverse=True))
    return re.compile(_NUMBER + rf"({units})\b", re.IGNORECASE)


def _has(words: Iterable[str], text: str) -> bool:
    return any(re.search(rf"\b{re.escape(w)}", text, re.IGNORECASE) for w in words)


def length_in_text(text: str, spec: ResectedLength, *, needs_resected_word: bool) -> float | None:
    """The longest length in `text`, in cm; None when there is none or it may be the remnant."""
    if _has(spec.ambiguous_words, text):
        return None
    if needs_resected_word and not _has(spec.resected_words, text):
        return None
    found = [
        float(value.replace(",", ".")) * spec.units[unit.lower()]
        for value, unit in _pattern(spec).findall(text)
        if unit.lower() in spec.units
    ]
    return max(found) if found else None


def length_quantity(quantity: Any, spec: ResectedLength) -> float | None:
    """A UCUM length quantity (code or unit cm / mm / m) in cm."""
    if not isinstance(quantity, Mapping):
        return None
    value = quantity.get("value")
    unit = str(quantity.get("code") or quantity.get("unit") or "")
    if isinstance(value, bool) or not isinstance(value, int | float) or unit not in spec.units:
        return None
    return float(value) * spec.units[unit] if value > 0 else None


def longest(*lengths: float | None) -> float | None:
    known = [x for x in lengths if x is not None]
    return max(known) if known else None
