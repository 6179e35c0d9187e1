"""The production launcher: workers without the Nagle stall, and bounded slow clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from cds_service.serve import listening_socket

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _nodelay_of_accepted(sock: socket.socket) -> int:
    seen: list[int] = []

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            conn = transport.get_extra_info("socket")
            seen.append(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    loop = asyncio.get_running_loop()
    server = await loop.create_server(Probe, sock=sock)
    host, port = sock.getsockname()[:2]
    _, writer = await asyncio.open_connection(host, port)
    for _ in range(100):
        if seen:
            break
        await asyncio.sleep(0.01)
    writer.close()
    server.close()
    return seen[0]


def test_the_shared_socket_gives_accepted_connections_tcp_nodelay() -> None:
    # The root cause of the 40 ms stall: asyncio sets TCP_NODELAY only on connections of a
    # socket that says IPPROTO_TCP, and a socket created with protocol 0 (as uvicorn up to 0.54
    # creates its --workers socket) does not say it, although it is TCP.
    bare = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    bare.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    bare.bind(("127.0.0.1", 0))
    bare.listen(8)
    assert bare.proto == 0
    assert asyncio.run(_nodelay_of_accepted(bare)) == 0
    ours = listening_socket("127.0.0.1", _free_port(), 8)
    assert ours.proto == socket.IPPROTO_TCP
    assert asyncio.run(_nodelay_of_accepted(ours)) != 0


@contextmanager
def serving(
    *args: str,
    nofile: int | None = None,
    env: dict[str, str] | None = None,
    log: Path | None = None,
) -> Iterator[int]:
    port = _free_port()
    env = {**os.environ, "CDS_AUTH": "off", **(env or {})}

    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    proc = subprocess.Popen(
        [sys.executable, "-m", "cds_service.serve", "--port", str(port), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL if log is None else log.open("wb"),
        preexec_fn=limit,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, "the server exited"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            pytest.fail("the server did not answer /health")
        yield port
        assert proc.poll() is None, "the server died"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _keep_alive_requests(port: int, n: int) -> float:
    """Seconds for n sequential GET /health on one keep-alive connection."""
    request = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        started = time.monotonic()
        for _ in range(n):
            conn.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(
                next(
                    line.split(b":")[1]
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
            )
            while len(body) < length:
                body += conn.recv(65536)
            assert head.startswith(b"HTTP/1.1 200")
        return time.monotonic() - started


@pytest.mark.parametrize("stack", ["standard", "plain"])
def test_two_workers_answer_keep_alive_requests_without_a_40_ms_stall(stack: str) -> None:
    with serving("--workers", "2", "--stack", stack) as port:
        _keep_alive_requests(port, 5)
        # With Nagle's algorithm on, each answer waits ~40 ms for the delayed ACK: 2 s or more.
        assert _keep_alive_requests(port, 50) < 1.0
        # The launcher gives the workers a shared metrics directory: /metrics sums them.
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert metrics.status_code == 200 and "cds_" in metrics.text


def _spawned_workers(metrics_dir: Path) -> set[int]:
    """The worker processes (multiprocessing children, not the supervisor) with gauge samples."""
    pids = {int(f.stem.rsplit("_", 1)[1]) for f in metrics_dir.glob("gauge_*.db")}
    return {p for p in pids if b"multiprocessing" in _cmdline(p)}


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""  # gone


def test_a_dead_workers_audit_queue_gauge_leaves_the_sum(tmp_path: Path) -> None:
    # Gauges are summed over the live workers: the supervisor drops the samples of one that died.
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "CDS_LOG_FORMAT": "json"}
    log = tmp_path.parent / "serve.log"
    with serving("--workers", "2", env=env, log=log) as port:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert "cds_audit_queue_depth 0.0" in text
        deadline = time.monotonic() + 60
        while len(workers := _spawned_workers(tmp_path)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)  # the second worker may still be starting
        assert len(workers) >= 2
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while list(tmp_path.glob(f"gauge_*_{victim}.db")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not list(tmp_path.glob(f"gauge_*_{victim}.db"))
        assert any(tmp_path.glob("counter_*.db"))  # counters of every worker are kept
    # Every line, the supervisor's first ones included, is in CDS_LOG_FORMAT.
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    messages = [line["message"] for line in lines]
    assert messages[0].startswith("CDS_AUTH=off")
    assert any(m.startswith("Started parent process") for m in messages)
    assert any(m.startswith(f"Child process [{victim}] died") for m in messages)
    assert messages[-1].startswith("Stopping parent process")


def test_slow_clients_neither_exhaust_descriptors_nor_lock_out_other_clients() -> None:
    # 300 connections that never finish their headers, against a 256-descriptor limit.
    args = ("--workers", "1", "--header-timeout", "1.5", "--max-connections", "50")
    with serving(*args, nofile=256) as port:
        slow = []
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"POST /cds-services/b12-patient-view HTTP/1.1\r\nHost: x\r\n")
            slow.append(s)
        # A client that sends its request at once is answered during the flood.
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
        time.sleep(2.0)  # past the header timeout: every slow connection was closed
        for s in slow:
            s.settimeout(5)
            with contextlib.suppress(ConnectionResetError):
                assert s.recv(1024) == b""  # closed by the server, never answered
            s.close()
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200


def test_a_connection_limit_the_descriptors_cannot_cover_stops_start_up() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cds_service.serve",
            "--port",
            str(_free_port()),
            "--max-connections",
            "5000",
        ],
        cwd=ROOT,
        env={**os.environ, "CDS_AUTH": "off"},
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024)),
    )
    assert done.returncode == 2
    assert "CDS_MAX_CONNECTIONS=5000 needs 5192 file descriptors" in done.stderr
