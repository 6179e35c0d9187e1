"""Start an ASGI app in a subprocess on one HTTP stack and read its memory and CPU from /proc.

Stacks (`STACKS`): `standard` and `plain` are the production launcher (`cds_service.serve`: one
listening socket with IPPROTO_TCP shared by the workers, slow-client limits) on uvloop +
httptools or asyncio + h11; `uvicorn-cli` is `python -m uvicorn --workers N` on asyncio + h11
(the command the launcher replaced), whose workers' connections lack TCP_NODELAY; `granian` is
the Rust server. With several workers the CPU time is
summed over the process tree and the peak RSS is the largest worker's.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

HOST = "127.0.0.1"
STACKS = ("standard", "plain", "uvicorn-cli", "granian")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def proc_status_kb(pid: int, field_name: str) -> int | None:
    """A `kB` field of /proc/<pid>/status (VmHWM = peak RSS, VmRSS = current RSS)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds used so far by the process (all its threads)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    except (OSError, ValueError, IndexError):
        return None


def process_tree(pid: int) -> list[int]:
    """The process and its descendants (a multi-worker server's supervisor and workers)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return out


def command(stack: str, app: str, port: int, workers: int, python: str | None = None) -> list[str]:
    """The command line that serves `app` on `stack` with `workers` worker processes."""
    py = python or sys.executable
    if stack in ("standard", "plain"):
        return [
            py,
            "-m",
            "cds_service.serve",
            "--app",
            app,
            "--host",
            HOST,
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--stack",
            stack,
        ]
    if stack == "uvicorn-cli":
        # As the service shipped it: plain uvicorn (asyncio + h11), its own socket for workers.
        return [
            py, "-m", "uvicorn", app, "--host", HOST, "--port", str(port),
            "--workers", str(workers), "--no-access-log", "--loop", "asyncio", "--http", "h11",
        ]  # fmt: skip
    if stack == "granian":
        return [
            py,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--host",
            HOST,
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-ws",
            app,
        ]
    raise ValueError(f"unknown stack {stack!r}")


@dataclass
class Server:
    """An app served on a free loopback port (`command` above), with no access log."""

    name: str
    app: str
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    stack: str = "standard"
    workers: int = 1
    #: Another build's interpreter and source tree (bench --compare): its `cds_service` is
    #: imported from `tree` (first on PYTHONPATH), which is also the working directory.
    python: str | None = None
    tree: Path | None = None
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def command(self) -> list[str]:
        return command(self.stack, self.app, self.port, self.workers, self.python)

    def start(self, timeout_s: float = 60.0) -> Server:
        self.port = free_port()
        # The launcher checks the service's settings for every app it serves (the bare
        # baseline and floor too), and the load generators send no JWT: auth is off here.
        env = {**os.environ, "CDS_AUTH": "off", **self.env}
        if self.tree is not None:
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(self.tree), os.environ.get("PYTHONPATH")) if p
            )
        # The service logs to stderr; a file (not a pipe nobody reads) so it never blocks.
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("wb")
        out = self._log if self._log is not None else subprocess.DEVNULL
        self.process = subprocess.Popen(
            self.command(), env=env, stdout=out, stderr=out, cwd=self.tree
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see log")
            try:
                if httpx.get(self.base_url + "/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer /health within {timeout_s:g} s")

    def _largest_kb(self, field_name: str) -> float | None:
        sizes = [proc_status_kb(p, field_name) for p in process_tree(self.pid)]
        known = [kb for kb in sizes if kb is not None]
        return max(known) / 1024 if known else None

    def peak_rss_mb(self) -> float | None:
        """The largest peak RSS of the server's processes (per worker, not summed)."""
        return self._largest_kb("VmHWM")

    def rss_mb(self) -> float | None:
        return self._largest_kb("VmRSS")

    def cpu_s(self) -> float | None:
        """User + system CPU seconds of the server's processes, workers included."""
        times = [proc_cpu_s(p) for p in process_tree(self.pid)]
        known = [t for t in times if t is not None]
        return sum(known) if known else None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
