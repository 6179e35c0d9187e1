"""FHIR JSON as it arrives, before validation: its shapes are checked, never assumed."""

from __future__ import annotations

from collections.abc import Mapping

#: What a JSON object may be. `isinstance(x, OBJECT)` tries `dict` first: parsed JSON is made
#: of dicts, and the `Mapping` ABC check costs several times as much on every element read.
OBJECT = (dict, Mapping)
