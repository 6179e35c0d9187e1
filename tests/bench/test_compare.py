"""`python -m bench --compare REF`: REF is exported from git and imported from its own tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.compare import export, imported_from, unmet_requirements  # noqa: E402


def _in_git_checkout() -> bool:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, check=False
    )
    return done.returncode == 0


@pytest.mark.skipif(not _in_git_checkout(), reason="needs the git history")
def test_ref_is_exported_and_its_own_service_is_imported(tmp_path: Path) -> None:
    commit = export("HEAD", tmp_path)
    assert len(commit) == 40
    assert (tmp_path / "cds_service" / "app.py").is_file()
    # The current interpreter has everything HEAD declares: no virtualenv is built for it.
    assert unmet_requirements(tmp_path) == []
    assert imported_from(sys.executable, tmp_path).startswith(str(tmp_path))


def test_an_unmet_requirement_is_named(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = ["orjson<1", "no-such-package-b12>=1"]\n'
    )
    unmet = unmet_requirements(tmp_path)
    assert len(unmet) == 2
    assert unmet[0].startswith("orjson<1 (installed ")
    assert unmet[1] == "no-such-package-b12>=1"
