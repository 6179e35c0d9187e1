"""A throwaway PostgreSQL cluster for the tests, from Debian's postgresql package.

`initdb` and `pg_ctl` refuse to run as root, so as root they run as the `postgres` user
(`runuser -u postgres --`) in a temporary directory that user owns. The server listens on a
free loopback port only, trusts local connections (nothing else can reach it) and is stopped
and deleted at the end of the session. Each test gets a database of its own.

Without PostgreSQL the tests that need it are skipped, except in CI (`CI=true`), where a
missing server is a failure: CI installs the package, so its absence is a broken build.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

HOST = "127.0.0.1"
_counter = itertools.count()


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL is required in CI: {reason}")
    pytest.skip(f"PostgreSQL not available: {reason}")


class PgCluster:
    def __init__(self) -> None:
        bin_dir = _bin_dir()
        if bin_dir is None:
            unavailable("no /usr/lib/postgresql/*/bin/initdb (Debian package postgresql)")
        assert bin_dir is not None
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="b12-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip
        options = (
            f"-c listen_addresses={HOST} -p {self.port} -k {self.root} -c fsync=off "
            "-c full_page_writes=off -c max_connections=100"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w",
            "start",
        )  # fmt: skip

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=self.root)
        if done.returncode != 0:
            unavailable(f"{tool} failed: {done.stderr.strip()[-500:]}")

    def create_database(self) -> str:
        """A new empty database; its SQLAlchemy URL."""
        name = f"b12_test_{os.getpid()}_{next(_counter)}"
        self._run("psql", "-h", HOST, "-p", str(self.port), "-U", "postgres", "-d", "postgres",
                  "-q", "-c", f"CREATE DATABASE {name}")  # fmt: skip
        return f"postgresql://postgres@{HOST}:{self.port}/{name}"

    def stop(self) -> None:
        subprocess.run(
            (["runuser", "-u", "postgres", "--"] if self.as_root else [])
            + [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            timeout=60,
            cwd=self.root,
        )
        shutil.rmtree(self.root, ignore_errors=True)
