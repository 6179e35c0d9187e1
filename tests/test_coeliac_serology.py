"""M6 / M7: coeliac serology (IgA tTG with total IgA) when no cause is found (T6), only under a
profile whose source says so (nice-ng239: NICE NG239 and NG20 1.1.1)."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest
from support import golden_bundle, resources_of

from cds_service.engine import Engine
from cds_service.protocol import default_protocol
from cds_service.protocol.loader import DATA_DIR, ProtocolError, load_protocol

ENGINE = Engine.build()
START = date(2026, 12, 1)


def _monitoring(slug: str, profile: str) -> list[str]:
    plan = ENGINE.plan(resources_of(golden_bundle(slug)), start=START, profile=profile)
    return [m.id for m in plan.monitoring]


def test_M6_M7_coeliac_serology_and_total_iga_with_no_cause_under_nice() -> None:
    ids = _monitoring("m5-unknown-cause-nice", "nice-ng239")
    assert {"M5", "M6", "M7"} <= set(ids)
    rules = {m.id: m for m in default_protocol().rules.monitoring_rules}
    assert (rules["M6"].test.system, rules["M6"].test.code) == ("loinc", "46128-5")
    assert (rules["M7"].test.system, rules["M7"].test.code) == ("loinc", "2458-8")
    assert rules["M6"].test.source and rules["M7"].test.source


@pytest.mark.parametrize("profile", ["standard", "fda-label"])
def test_M6_M7_not_asked_where_the_profiles_sources_do_not_say_so(profile: str) -> None:
    ids = _monitoring("m5-unknown-cause-nice", profile)
    assert "M5" in ids
    assert "M6" not in ids and "M7" not in ids


def test_M6_only_when_no_cause_is_found() -> None:
    ids = _monitoring("t2-pernicious-anemia-d51-0-nice", "nice-ng239")
    assert "M6" not in ids and "M7" not in ids


def test_M6_a_profile_the_protocol_does_not_have_is_refused(tmp_path: Path) -> None:
    for f in DATA_DIR.glob("*.yaml"):
        shutil.copy(f, tmp_path / f.name)
    rules = tmp_path / "rules.yaml"
    text = rules.read_text()
    assert "profiles: [nice-ng239]" in text
    rules.write_text(text.replace("profiles: [nice-ng239]", "profiles: [nice-ng2399]", 1))
    with pytest.raises(ProtocolError, match="unknown profile"):
        load_protocol(tmp_path)
