"""Reading laboratory values: UCUM units into the unit each threshold is written in.

A unit missing from the protocol's table is never guessed; the result is kept, marked unusable,
and named on the cards so the clinician knows why it was not used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, date, datetime
from itertools import combinations
from typing import Any

from cds_service.clinical.facts import LabResult
from cds_service.clinical.raw import OBJECT
from cds_service.protocol import Protocol
from cds_service.protocol.model import Analyte


def _json_number(value: Any) -> float | None:
    """A JSON number only: a string such as "120" is not one, whatever a parser would make of it."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _no_value_reason(res: Mapping[str, Any]) -> str:
    """Why a result has no value, in the laboratory's words where it gives any (haemolysed...)."""
    reasons: list[str] = []
    absent = res.get("dataAbsentReason")
    if isinstance(absent, OBJECT):
        if isinstance(absent.get("text"), str):
            reasons.append(absent["text"])
        for c in _array(absent.get("coding")):
            reasons.append(str(c.get("display") or c.get("code") or ""))
    if isinstance(res.get("valueString"), str):
        reasons.append(res["valueString"])
    value = res.get("valueCodeableConcept")
    if isinstance(value, OBJECT) and isinstance(value.get("text"), str):
        reasons.append(value["text"])
    said = "; ".join(dict.fromkeys(r.strip() for r in reasons if r and r.strip()))
    return f"no value ({said[:80]})" if said else "no value"


def dated_after(when: datetime, today: date | None) -> bool:
    """Whether a result is dated after today (D9): by its own calendar day and by UTC's alike,
    so a result taken this morning at +13:00, already "tomorrow" by its own clock, still counts
    on a server whose day is UTC's, and one taken this evening at -08:00 counts as well."""
    if today is None:
        return False
    return when.date() > today and when.astimezone(UTC).date() > today


def read_quantity(
    analyte: str,
    reference: str,
    when: datetime | None,
    res: Mapping[str, Any],
    spec: Analyte,
    today: date | None = None,
) -> LabResult:
    """The result in its comparison unit, or why it cannot be used (protocol D9)."""
    quantity = res.get("valueQuantity")
    if not isinstance(quantity, OBJECT) or quantity.get("value") is None:
        reason = _no_value_reason(res)
        return LabResult(analyte, reference, when, reason, problem=reason)
    raw = quantity.get("value")
    unit = str(quantity.get("code") or quantity.get("unit") or "").strip()
    comparator = str(quantity.get("comparator") or "")
    shown = f"{comparator}{raw} {quantity.get('unit') or unit}".strip()
    value = _json_number(raw)
    if value is None:
        return LabResult(analyte, reference, when, shown, problem="the value is not a number")
    rule = spec.units.get(unit) or spec.units.get(str(quantity.get("unit") or "").strip())
    if rule is None:
        return LabResult(
            analyte, reference, when, shown, problem=f"unknown unit {unit or 'none'!r}"
        )
    if when is not None and dated_after(when, today):
        return LabResult(
            analyte, reference, when, shown, problem=f"dated after today ({when.date()})"
        )
    compared = value * rule.factor
    bound = spec.plausible_below.get(rule.compare_as)
    if compared <= 0 or (bound is not None and compared >= bound):
        return LabResult(analyte, reference, when, shown, problem="implausible value")
    return LabResult(analyte, reference, when, shown, value=compared, unit=rule.compare_as)


def _array(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, OBJECT)] if isinstance(value, list) else []


def read_qualitative(
    analyte: str,
    reference: str,
    when: datetime | None,
    res: Mapping[str, Any],
    protocol: Protocol,
    today: date | None = None,
) -> LabResult:
    reading = protocol.observations.qualitative
    if when is not None and dated_after(when, today):
        shown = "result"
        return LabResult(
            analyte, reference, when, shown, problem=f"dated after today ({when.date()})"
        )
    interpretations = {
        str(c.get("code"))
        for concept in _array(res.get("interpretation"))
        for c in _array(concept.get("coding"))
    }
    words: list[str] = []
    value = res.get("valueCodeableConcept")
    if isinstance(value, OBJECT):
        words.append(str(value.get("text") or ""))
        words += [str(c.get("display") or "") for c in _array(value.get("coding"))]
    if isinstance(res.get("valueString"), str):
        words.append(res["valueString"])
    text = " ".join(words).lower()
    shown = text.strip() or ", ".join(sorted(interpretations)) or "no value"
    if interpretations & set(reading.negative_interpretations) or any(
        w in text for w in reading.negative_words
    ):
        return LabResult(analyte, reference, when, shown, positive=False)
    if interpretations & set(reading.positive_interpretations) or any(
        w in text for w in reading.positive_words
    ):
        return LabResult(analyte, reference, when, shown, positive=True)
    return LabResult(
        analyte, reference, when, shown, problem="result could not be read as positive or negative"
    )


def threshold_value(threshold: Any, unit: str, spec: Analyte) -> float | None:
    """The threshold in `unit`, converting only with the protocol's own factors."""
    if isinstance(threshold, (int, float)):
        return float(threshold)
    if not isinstance(threshold, OBJECT):
        return None
    if unit in threshold:
        return float(threshold[unit])
    for t_unit, t_value in threshold.items():
        factor = spec.conversions.get(t_unit, {}).get(unit)
        if factor:
            return float(t_value) * factor
    return None


def display_value(result: LabResult, spec: Analyte) -> str:
    """The value as received, plus the display unit where it differs (150 pg/mL = 111 pmol/L)."""
    if result.value is None or result.unit is None or spec.display_unit in (None, result.unit):
        return result.shown
    factor = spec.conversions.get(result.unit, {}).get(spec.display_unit or "")
    if not factor:
        return result.shown
    return f"{result.shown} (= {result.value * factor:.0f} {spec.display_unit})"


def _in_unit(result: LabResult, unit: str, spec: Analyte) -> float | None:
    """The value in `unit`, converting only with the protocol's own factors."""
    if result.value is None or result.unit is None:
        return None
    if result.unit == unit:
        return result.value
    factor = spec.conversions.get(result.unit, {}).get(unit)
    return result.value * factor if factor else None


def display_number(result: LabResult, spec: Analyte) -> float | None:
    """The value in the analyte's display unit, to order results that tie (protocol D10)."""
    return _in_unit(result, spec.display_unit or result.unit or "", spec)


def value_key(result: LabResult) -> tuple[str | None, float | None, bool | None]:
    """Equal for results that say exactly the same in the same unit (0.369 nmol/L and
    369 pmol/L, once both are in pmol/L): duplicates of one value count once (protocol D10)."""
    value = round(result.value, 6) if result.value is not None else None
    return result.unit, value, result.positive


def same_value(a: LabResult, b: LabResult, spec: Analyte) -> bool:
    """Whether two results that tie for the latest say the same (protocol D10). In one unit
    only equal values do; across unit families (300 pg/mL and 221 pmol/L) the values in the
    display unit may differ by the rounding a conversion carries (`same_value_within`). A value
    that cannot be converted never agrees: a pair the protocol cannot compare is a conflict."""
    if spec.qualitative:
        return a.positive == b.positive
    if a.unit == b.unit:
        return a.value is not None and b.value is not None and math.isclose(a.value, b.value)
    unit = spec.display_unit or a.unit or ""
    first, second = _in_unit(a, unit, spec), _in_unit(b, unit, spec)
    if first is None or second is None:
        return False
    return abs(first - second) < spec.same_value_within or math.isclose(first, second)


def disagree(results: list[LabResult], spec: Analyte) -> bool:
    """Whether results of one time, one per distinct `value_key`, conflict (protocol D10):
    two distinct values in one unit always do; one value per unit family is compared."""
    by_unit: dict[str | None, list[LabResult]] = {}
    for r in results:
        by_unit.setdefault(r.unit, []).append(r)
    if any(len(group) > 1 for group in by_unit.values()):
        return True
    return not all(same_value(a, b, spec) for a, b in combinations(results, 2))
