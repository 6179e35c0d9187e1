"""The production server: `python -m cds_service.serve` (`make serve`, the Dockerfile's CMD).

Several uvicorn workers share one listening socket made here, not by uvicorn. uvicorn's own
`--workers N` (up to 0.54) binds `socket.socket(family)`, whose protocol number is 0; asyncio
sets TCP_NODELAY on accepted connections only when the listening socket says IPPROTO_TCP, so each
worker's connections kept Nagle's algorithm, and a response written in two sends (headers, then
body) waited for the client's delayed ACK: about 40 ms per keep-alive request. The socket made
here names IPPROTO_TCP.

Slow clients are bounded (cds_service/slow_clients.py): a connection must send its request
headers within the header timeout and its body within the body timeout, each worker holds at
most `--max-connections` connections (others are closed at once; HTTP/1.1 answers one request
at a time per connection, so that is also its limit of requests in progress), and the
descriptor limit is raised to the hard limit at start-up and checked against that budget.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Sequence

import uvicorn
from prometheus_client import multiprocess
from uvicorn.supervisors import Multiprocess

from cds_service import logs, slow_clients, startup
from cds_service.settings import Settings

APP = "cds_service.app:app"


def listening_socket(host: str, port: int, backlog: int) -> socket.socket:
    """A TCP listening socket that says IPPROTO_TCP, so accepted connections get TCP_NODELAY."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m cds_service.serve", description=__doc__)
    p.add_argument("--app", default=APP, help=argparse.SUPPRESS)
    p.add_argument("--host", default=env("CDS_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(env("CDS_PORT", "8000")))
    p.add_argument(
        "--workers",
        type=int,
        default=int(env("CDS_WORKERS", str(os.cpu_count() or 1))),
        help="worker processes (CDS_WORKERS; default: one per CPU)",
    )
    p.add_argument(
        "--stack",
        choices=("standard", "plain"),
        default=env("CDS_HTTP_STACK", "standard"),
        help="standard: uvloop + httptools; plain: asyncio + h11 (CDS_HTTP_STACK)",
    )
    slow_clients.add_arguments(p)
    p.add_argument("--access-log", action="store_true", help="uvicorn's access log (off)")
    return p


def config(args: argparse.Namespace, log_format: str = "json") -> uvicorn.Config:
    limits = slow_clients.Limits.from_args(args)
    slow_clients.export(limits)
    standard = args.stack == "standard"
    return uvicorn.Config(
        args.app,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop" if standard else "asyncio",
        http=slow_clients.PROTOCOLS["httptools" if standard else "h11"],
        timeout_keep_alive=limits.keep_alive_s,
        timeout_graceful_shutdown=limits.graceful_shutdown_s,
        backlog=limits.backlog,
        access_log=args.access_log,
        # The supervisor and every worker log in CDS_LOG_FORMAT from their first line.
        log_config=logs.dict_config(log_format),
        proxy_headers=False,
        server_header=False,
    )


class Supervisor(Multiprocess):
    """uvicorn's supervisor, which also drops the gauges of a worker that is gone.

    The gauges (the audit-queue depth) are summed over the workers alive; a worker that died
    or was replaced would otherwise count its last value for ever.
    """

    def keep_subprocess_alive(self) -> None:
        self._dropping_gone(super().keep_subprocess_alive)

    def restart_all(self) -> None:
        self._dropping_gone(super().restart_all)

    def _dropping_gone(self, step: Callable[[], None]) -> None:
        before = {p.pid for p in self.processes}
        step()
        for pid in before - {p.pid for p in self.processes}:
            if pid is not None:
                multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def check_start_up(settings: Settings) -> None:
    """Build the configured app once in the supervisor (then drop it), or exit 2 with one line."""
    from cds_service.app import create_app

    startup.or_exit(lambda: create_app(settings))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = startup.or_exit(Settings.from_env)
    logs.configure(settings.log_format)
    limits = slow_clients.Limits.from_args(args)
    problem = slow_clients.descriptor_budget(limits)
    if problem:
        startup.fail(problem)
    if args.workers > 1 and args.app == APP:
        # A worker that cannot start is restarted forever by uvicorn's supervisor: a bad
        # setting, clients file or table is reported once, here, with exit 2.
        check_start_up(settings)
    if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Metrics summed over the workers (cds_service.metrics): a fresh, empty directory.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="cds-metrics-")
    cfg = config(args, settings.log_format)
    sock = listening_socket(args.host, args.port, limits.backlog)
    server = uvicorn.Server(cfg)
    if args.workers <= 1:
        server.run(sockets=[sock])
    else:
        Supervisor(cfg, sockets=[sock]).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
