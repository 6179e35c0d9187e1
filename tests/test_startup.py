"""Start-up failures as the operator sees them: one line naming what to fix, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

#: Builds the app as `uvicorn cds_service.app:app` does, with the protocol tables in $TABLES.
START = (
    "import os, pathlib\n"
    "import cds_service.protocol.loader as loader\n"
    "if os.environ.get('TABLES'):\n"
    "    loader.load_protocol.__defaults__ = (pathlib.Path(os.environ['TABLES']),)\n"
    "from cds_service.app import app\n"
)


def start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    return subprocess.run(
        [sys.executable, "-c", START],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_one_line(done: subprocess.CompletedProcess[str], *names: str) -> None:
    """One line in the log format (JSON unless CDS_LOG_FORMAT=text) naming `names`."""
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    line = lines[0]
    if not line.startswith("b12-cds"):
        parsed = json.loads(line)
        assert parsed["level"] == "error" and parsed["logger"] == "cds_service.startup"
        line = parsed["message"]
    assert line.startswith("b12-cds: cannot start: ")
    assert "Traceback" not in done.stderr
    for name in names:
        assert name in line


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"CDS_AUTH": "off", "CDS_MAX_BODY_BYTES": "lots"}, ["CDS_MAX_BODY_BYTES", "'lots'"]),
        ({"CDS_AUTH": "on"}, ["CDS_PUBLIC_BASE_URL"]),
        ({"CDS_AUTH": "off", "CDS_LOG_FORMAT": "xml"}, ["CDS_LOG_FORMAT", "json, text"]),
        ({"CDS_AUTH": "off", "CDS_PROFILE": "nope"}, ["CDS_PROFILE", "nope"]),
        (
            {
                "CDS_AUTH": "on",
                "CDS_PUBLIC_BASE_URL": "https://cds.example.org",
                "CDS_CLIENTS_FILE": "/nonexistent/clients.json",
            },
            ["CDS_CLIENTS_FILE", "/nonexistent/clients.json"],
        ),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_2(env: dict[str, str], names: list[str]) -> None:
    assert_one_line(start(env), *names)


def test_a_bad_clients_file_names_the_file_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "clients.json"
    path.write_text('[{"iss": "https://ehr.example.org"}]')
    env = {
        "CDS_AUTH": "on",
        "CDS_PUBLIC_BASE_URL": "https://cds.example.org",
        "CDS_CLIENTS_FILE": str(path),
    }
    assert_one_line(start(env), "CDS_CLIENTS_FILE", str(path))


def test_a_bad_protocol_table_names_the_file(tmp_path: Path) -> None:
    data = Path(__file__).resolve().parents[1] / "cds_service" / "protocol" / "data"
    for table in data.glob("*.yaml"):
        (tmp_path / table.name).write_text(table.read_text())
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules.read_text() + "\nunexpected_top_level_key: 1\n")
    assert_one_line(start({"CDS_AUTH": "off", "TABLES": str(tmp_path)}), "rules.yaml")


@pytest.mark.parametrize("kind", ["json", "text"])
def test_the_line_follows_the_log_format(kind: str) -> None:
    done = start({"CDS_AUTH": "off", "CDS_MAX_BODY_BYTES": "lots", "CDS_LOG_FORMAT": kind})
    assert_one_line(done, "CDS_MAX_BODY_BYTES")
    line = done.stderr.strip()
    if kind == "json":
        assert json.loads(line)["message"].startswith("b12-cds: cannot start: ")
    else:
        assert line.startswith("b12-cds: cannot start: ")


def test_good_settings_start() -> None:
    done = start({"CDS_AUTH": "off"})
    assert done.returncode == 0, done.stderr


def test_several_workers_with_a_bad_setting_exit_once_instead_of_restarting() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    done = subprocess.run(
        [sys.executable, "-m", "cds_service.serve", "--port", "0", "--workers", "2"],
        env={**clean, "CDS_AUTH": "off", "CDS_MAX_BODY_BYTES": "lots"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_one_line(done, "CDS_MAX_BODY_BYTES")
