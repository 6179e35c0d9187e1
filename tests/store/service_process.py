"""The service as deployed: `uvicorn cds_service.app:app --workers N` in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from auth.keys import jwks_of, make_token, new_ec_key

HOST = "127.0.0.1"
ISSUER = "https://ehr.example.org"
KEY = new_ec_key("process-test-key")
OPERATOR = "operator-" + "p" * 40
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class ServiceProcess:
    def __init__(self, database_env: dict[str, str], *, workers: int = 1) -> None:
        self.port = _free_port()
        self.workers = workers
        clients = Path(tempfile.mkdtemp(prefix="b12-clients-")) / "clients.json"
        clients.write_text(json.dumps([{"iss": ISSUER, "jwks": jwks_of(KEY)}]))
        self.env = {
            **os.environ,
            **database_env,
            "CDS_AUTH": "on",
            "CDS_PUBLIC_BASE_URL": self.base_url,
            "CDS_CLIENTS_FILE": str(clients),
            "CDS_OPERATOR_TOKEN": OPERATOR,
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> ServiceProcess:
        command = [
            sys.executable, "-m", "uvicorn", "cds_service.app:app", "--host", HOST,
            "--port", str(self.port), "--workers", str(self.workers), "--no-access-log",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(self.process.stderr.read().decode()[-2000:])  # type: ignore[union-attr]
            try:
                healthy = httpx.get(self.base_url + "/health", timeout=1).status_code == 200
                if healthy and len(self.worker_pids()) >= (self.workers if self.workers > 1 else 0):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError("the service did not start within 60 s")

    def worker_pids(self) -> list[int]:
        """The worker processes (with --workers N > 1; the server process itself otherwise)."""
        assert self.process is not None
        pid = self.process.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return []
        out = []
        for child in children:
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in cmdline or b"uvicorn" in cmdline:
                out.append(int(child))
        return out

    def stop(self) -> None:
        """Graceful: SIGTERM, as an orchestrator stops a container."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)

    def kill(self) -> None:
        """SIGKILL every process of the service at once: nothing gets to clean up."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def token(self, path: str) -> str:
        return make_token(KEY, KEY.kid, ISSUER, self.base_url + path)

    def signed(self, path: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(path)}"}

    @staticmethod
    def operator() -> dict[str, str]:
        return {"Authorization": f"Bearer {OPERATOR}"}

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()
