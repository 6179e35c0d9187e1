"""Load the protocol tables once and check that they hold together.

Cross-references (value sets named in rules, regimens named by profiles, citation keys) are
checked here because a typo in a table would otherwise only show up for the one patient whose
record reaches that rule.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from cds_service.protocol.model import (
    CodesTable,
    ObservationsTable,
    Profile,
    ProfilesTable,
    RegimensTable,
    RulesTable,
    SourcesTable,
)

DATA_DIR = Path(__file__).parent / "data"
INTRAVENOUS_ROUTE = ("http://snomed.info/sct", "47625008")
# D-rules that answer with a card of their own (protocol.md section 2).
CARDED_DEFICIENCY_RULES = ("D4", "D6", "D7", "D8", "D9", "D10")

# Keys of the `when` language whose argument names a value set, an analyte or a threshold.
_VALUE_SET_KEYS = {
    "condition",
    "procedure",
    "medication",
    "draft_order",
    "active_order",
    "allergy",
    "draft_service_request",
    "route",
    "b12_therapy_by",
    "b12_therapy_other_than",
}
_ANALYTE_KEYS = {"positive"}
_COMPARISON_KEYS = {"below", "at_or_below", "above"}
_LEAF_KEYS = (
    _VALUE_SET_KEYS
    | _ANALYTE_KEYS
    | _COMPARISON_KEYS
    | {
        "age_below",
        "status",
        "b12_therapy",
        "deficiency_rule",
        "draft_order_changes_b12_therapy",
        "always",
        "type",
        "cause",
        "flag",
        "severity",
        "b12_deficient_on_therapy_after_days",
    }
)


class ProtocolError(ValueError):
    """The protocol tables are malformed or inconsistent; the service must not start."""


@dataclass(frozen=True, eq=False)
class Protocol:
    """Compared and hashed by identity: one loaded protocol is one object, cached per process."""

    id: str
    title: str
    version: str
    publisher: str
    url: str
    codes: CodesTable
    observations: ObservationsTable
    rules: RulesTable
    regimens: RegimensTable
    profiles: ProfilesTable
    sources: SourcesTable

    def profile(self, name: str | None) -> Profile:
        key = name or self.profiles.default
        try:
            return self.profiles.profiles[key]
        except KeyError:
            raise UnknownProfileError(key, tuple(self.profiles.profiles)) from None

    def system_url(self, alias: str) -> str:
        return self.codes.systems.get(alias, alias)


class UnknownProfileError(LookupError):
    def __init__(self, name: str, known: tuple[str, ...]) -> None:
        super().__init__(f"unknown protocol profile {name!r}; known: {', '.join(known)}")
        self.name = name


def _read(path: Path, model: type[BaseModel]) -> Any:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ProtocolError(f"{path.name}: cannot read: {exc}") from exc
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ProtocolError(f"{path.name}: {where}: {first['msg']}") from exc


def load_protocol(data_dir: Path = DATA_DIR) -> Protocol:
    """Read and cross-check every table; raise ProtocolError naming the first problem."""
    manifest = yaml.safe_load((data_dir / "protocol.yaml").read_text(encoding="utf-8"))
    if not isinstance(manifest, dict) or not {"id", "version", "title"} <= manifest.keys():
        raise ProtocolError("protocol.yaml: needs id, title and version")
    protocol = Protocol(
        id=str(manifest["id"]),
        title=str(manifest["title"]),
        version=str(manifest["version"]),
        publisher=str(manifest.get("publisher", "")),
        url=str(manifest.get("url", "")),
        codes=_read(data_dir / "codes.yaml", CodesTable),
        observations=_read(data_dir / "observations.yaml", ObservationsTable),
        rules=_read(data_dir / "rules.yaml", RulesTable),
        regimens=_read(data_dir / "regimens.yaml", RegimensTable),
        profiles=_read(data_dir / "profiles.yaml", ProfilesTable),
        sources=_read(data_dir / "sources.yaml", SourcesTable),
    )
    _check(protocol)
    return protocol


@cache
def default_protocol() -> Protocol:
    """The packaged protocol, loaded once per process."""
    return load_protocol()


def _walk(expr: Any, where: str) -> Iterator[tuple[str, Any, str]]:
    if not isinstance(expr, Mapping) or not expr:
        raise ProtocolError(f"{where}: a `when` expression must be a non-empty mapping")
    for key, arg in expr.items():
        if key in ("any", "all"):
            if not isinstance(arg, list) or not arg:
                raise ProtocolError(f"{where}: `{key}` takes a non-empty list")
            for i, sub in enumerate(arg):
                yield from _walk(sub, f"{where}.{key}[{i}]")
        elif key == "not":
            yield from _walk(arg, f"{where}.not")
        elif key in _LEAF_KEYS:
            yield key, arg, where
        else:
            raise ProtocolError(f"{where}: unknown `when` key {key!r}")


def _check(p: Protocol) -> None:
    systems = p.codes.systems
    value_sets = p.codes.value_sets
    analytes = p.observations.analytes
    sources = p.sources.sources

    def cite(keys: tuple[str, ...], where: str) -> None:
        for key in keys:
            if key not in sources:
                raise ProtocolError(f"{where}: unknown source {key!r}")

    def system(alias: str, where: str) -> None:
        if alias not in systems:
            raise ProtocolError(f"{where}: unknown code system {alias!r}")

    for name, vs in value_sets.items():
        for entry in vs.codes:
            system(entry.system, f"codes.yaml: {name}")
            if entry.source not in sources:
                raise ProtocolError(
                    f"codes.yaml: {name} {entry.code}: unknown source {entry.source}"
                )
    for name, analyte in analytes.items():
        if not analyte.qualitative and not analyte.units:
            raise ProtocolError(f"observations.yaml: {name}: a quantitative analyte needs units")
        for unit in {rule.compare_as for rule in analyte.units.values()}:
            if unit not in analyte.plausible_below:
                raise ProtocolError(f"observations.yaml: {name}: plausible_below needs {unit}")

    thresholds = {k for prof in p.profiles.profiles.values() for k in prof.thresholds}

    def check_when(expr: Any, where: str) -> None:
        for key, arg, at in _walk(expr, where):
            if key in _VALUE_SET_KEYS and arg not in value_sets:
                raise ProtocolError(f"{at}: unknown value set {arg!r}")
            if key in _ANALYTE_KEYS and arg not in analytes:
                raise ProtocolError(f"{at}: unknown analyte {arg!r}")
            if key in _COMPARISON_KEYS:
                if arg.get("analyte") not in analytes:
                    raise ProtocolError(f"{at}: unknown analyte {arg.get('analyte')!r}")
                if arg.get("threshold") not in thresholds:
                    raise ProtocolError(f"{at}: unknown threshold {arg.get('threshold')!r}")
            if key == "age_below" and arg not in thresholds:
                raise ProtocolError(f"{at}: unknown threshold {arg!r}")

    for rule in p.rules.type_rules:
        for cause in rule.causes:
            check_when(cause.when, f"rules.yaml: {rule.id}.{cause.id}")
            if cause.reason_value_set and cause.reason_value_set not in value_sets:
                raise ProtocolError(f"rules.yaml: {rule.id}.{cause.id}: unknown reason_value_set")
    safety_ids = {r.id for r in p.rules.safety_rules}
    if p.rules.severity is not None:
        check_when(p.rules.severity.severe_when, "rules.yaml: severity")
        cite(p.rules.severity.citations, "rules.yaml: severity")
    monitoring_ids = {m.id for m in p.rules.monitoring_rules}
    type_ids = {r.id for r in p.rules.type_rules}
    for monitoring in p.rules.monitoring_rules:
        if monitoring.only_with and monitoring.only_with not in safety_ids | type_ids:
            raise ProtocolError(f"rules.yaml: {monitoring.id}: only_with names no S- or T-rule")
        for name in monitoring.profiles:
            if name not in p.profiles.profiles:
                raise ProtocolError(f"rules.yaml: {monitoring.id}: unknown profile {name!r}")
    for s in p.rules.safety_rules:
        check_when(s.when, f"rules.yaml: {s.id}")
        cite(s.citations, f"rules.yaml: {s.id}")
        if s.replaces and s.replaces not in value_sets:
            raise ProtocolError(f"rules.yaml: {s.id}: unknown value set {s.replaces!r}")
        if s.route and s.route not in p.regimens.routes:
            raise ProtocolError(f"rules.yaml: {s.id}: unknown route {s.route!r}")
        for m in s.monitoring:
            if m not in monitoring_ids:
                raise ProtocolError(f"rules.yaml: {s.id}: unknown monitoring rule {m!r}")
    for d_id, d in p.rules.deficiency_rules.items():
        cite(d.citations, f"rules.yaml: {d_id}")
        if d.when is not None:
            check_when(d.when, f"rules.yaml: {d_id}")
    for o_id, o in p.rules.draft_order_rules.items():
        cite(o.citations, f"rules.yaml: {o_id}")
    for d_id in CARDED_DEFICIENCY_RULES:
        carded = p.rules.deficiency_rules.get(d_id)
        if carded is None or carded.card is None:
            raise ProtocolError(f"rules.yaml: {d_id} needs a card (summary and detail)")

    for name, med in p.regimens.medications.items():
        if med.coding:
            system(med.coding.system, f"regimens.yaml: medication {name}")
    for name, route in p.regimens.routes.items():
        system(route.coding.system, f"regimens.yaml: route {name}")
        if (systems[route.coding.system], route.coding.code) == INTRAVENOUS_ROUTE:
            raise ProtocolError(f"regimens.yaml: route {name}: the intravenous route is never used")
    for name, regimen in p.regimens.regimens.items():
        cite(regimen.citations, f"regimens.yaml: {name}")
        for i, phase in enumerate(regimen.phases):
            where = f"regimens.yaml: {name}.{phase.id}"
            if phase.medication not in p.regimens.medications:
                raise ProtocolError(f"{where}: unknown medication {phase.medication!r}")
            if phase.route not in p.regimens.routes:
                raise ProtocolError(f"{where}: unknown route {phase.route!r}")
            last = i == len(regimen.phases) - 1
            if not last and phase.duration is None:
                raise ProtocolError(f"{where}: only the last phase may be open-ended")
            if phase.maintenance and not last:
                raise ProtocolError(f"{where}: the maintenance phase must come last")

    if p.profiles.default not in p.profiles.profiles:
        raise ProtocolError(f"profiles.yaml: default profile {p.profiles.default!r} is not defined")
    for name, prof in p.profiles.profiles.items():
        cite(prof.citations, f"profiles.yaml: {name}")
        for rr in prof.regimen_rules:
            where = f"profiles.yaml: {name}.{rr.id}"
            check_when(rr.when, where)
            for regimen_id in (rr.recommended, *(a.regimen for a in rr.alternatives)):
                if regimen_id not in p.regimens.regimens:
                    raise ProtocolError(f"{where}: unknown regimen {regimen_id!r}")
            for key, arg, at in _walk(rr.when, where):
                if key == "flag" and arg not in safety_ids:
                    raise ProtocolError(f"{at}: unknown safety rule {arg!r}")
        for option in prof.option_rules:
            where = f"profiles.yaml: {name}.option_rules.{option.id}"
            check_when(option.when, where)
            for regimen_id in (*option.beside, *option.beside.values()):
                if regimen_id not in p.regimens.regimens:
                    raise ProtocolError(f"{where}: unknown regimen {regimen_id!r}")
            for key, arg, at in _walk(option.when, where):
                if key == "flag" and arg not in safety_ids:
                    raise ProtocolError(f"{at}: unknown safety rule {arg!r}")
