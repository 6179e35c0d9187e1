"""The protocol tables load, hold together, and a malformed table stops start-up clearly."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cds_service.fhir.medication_requests import MedicationRequestWriter
from cds_service.protocol import ProtocolError, default_protocol, load_protocol
from cds_service.protocol.loader import DATA_DIR

VERIFIED_SOURCES_FOR_OUTPUT = {"GPS", "CM23", "OFDA", "LSI", "LAB", "PRIMIS", "CMS-LIST"}


def copy_tables(tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(DATA_DIR, target)
    return target


Change = Callable[[Any], Any]


def edit(path: Path, change: Change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_packaged_protocol_loads_with_three_profiles() -> None:
    protocol = default_protocol()
    assert set(protocol.profiles.profiles) == {"standard", "fda-label", "nice-ng239"}
    assert protocol.version


def test_every_code_names_a_source() -> None:
    protocol = default_protocol()
    for vs in protocol.codes.value_sets.values():
        for entry in vs.codes:
            assert entry.source in protocol.sources.sources


def test_no_regimen_uses_the_intravenous_route() -> None:
    protocol = default_protocol()
    for route in protocol.regimens.routes.values():
        assert route.coding.code != "47625008"


@pytest.mark.parametrize(
    ("file", "change", "message"),
    [
        (
            "rules.yaml",
            lambda d: d["safety_rules"][0]["when"].update(condition="nope"),
            "unknown value set",
        ),
        ("rules.yaml", lambda d: d["safety_rules"][0].update(indicator="urgent"), "indicator"),
        (
            "profiles.yaml",
            lambda d: d["profiles"]["standard"]["regimen_rules"][0].update(recommended="x"),
            "unknown regimen",
        ),
        (
            "regimens.yaml",
            lambda d: d["regimens"]["cyanocobalamin-im-1000"]["phases"][0].update(dose_ug=-5),
            "dose_ug",
        ),
        (
            "regimens.yaml",
            lambda d: d["routes"]["oral"]["coding"].update(code="47625008"),
            "intravenous",
        ),
        (
            "codes.yaml",
            lambda d: d["value_sets"]["b12_deficiency"]["codes"][0].update(source="MEMORY"),
            "unknown source",
        ),
    ],
)
def test_malformed_table_fails_with_a_clear_message(
    tmp_path: Path,
    file: str,
    change: callable,
    message: str,  # type: ignore[valid-type]
) -> None:
    data = copy_tables(tmp_path)
    edit(data / file, change)
    with pytest.raises(ProtocolError, match=message) as info:
        load_protocol(data)
    assert file in str(info.value)


def test_unparseable_yaml_fails_naming_the_file(tmp_path: Path) -> None:
    data = copy_tables(tmp_path)
    (data / "rules.yaml").write_text("safety_rules: [unclosed")
    with pytest.raises(ProtocolError, match="rules.yaml"):
        load_protocol(data)


def test_a_regimen_that_would_give_invalid_fhir_stops_the_writer(tmp_path: Path) -> None:
    """Every phase's MedicationRequest template is validated once, when the writer is built."""
    data = copy_tables(tmp_path)
    # Loads as a table (a code is any string there) but FHIR codes have no double spaces.
    edit(
        data / "regimens.yaml",
        lambda d: d["medications"]["cyanocobalamin-injection"]["coding"].update(code="3095  94"),
    )
    protocol = load_protocol(data)
    with pytest.raises(ProtocolError, match="regimens.yaml: regimen .* not valid FHIR R4"):
        MedicationRequestWriter(protocol)
