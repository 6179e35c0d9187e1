"""Runs the test FHIR server under uvicorn on loopback, in a background thread.

A real socket, rather than an in-process transport, is what makes the tests meaningful: the
service's own HTTP client, timeouts, connection pooling and URL handling all take part.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

import uvicorn

from .app import (
    BASE_PATH,
    DEFAULT_COUNT,
    ErrorMode,
    FhirState,
    RecordedRequest,
    Resource,
    create_app,
    load_bundles,
)

HOST = "127.0.0.1"


class FhirTestServer:
    """A FHIR R4 server for one test session or module; ``reset()`` isolates tests sharing it.

    ``bundles`` is a list of one-patient Bundles or a directory of ``*.json`` files. With
    ``token`` set, every request must carry ``Authorization: Bearer <token>``.
    """

    def __init__(
        self,
        bundles: Iterable[Resource] | str | Path = (),
        token: str | None = None,
        *,
        page_size: int = DEFAULT_COUNT,
    ) -> None:
        if isinstance(bundles, str | Path):
            bundles = load_bundles(bundles)
        self.state = FhirState(bundles, token, page_size)
        self.port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """Has a path prefix, as EHR FHIR bases do, so URL-prefix allowlists get exercised."""
        if self.port is None:
            raise RuntimeError("server is not running")
        return f"http://{HOST}:{self.port}{BASE_PATH}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot, since the server thread keeps appending."""
        with self.state.lock:
            return list(self.state.requests)

    @property
    def token(self) -> str | None:
        return self.state.token

    @token.setter
    def token(self, value: str | None) -> None:
        """Lets a test rotate or drop the expected token mid-run, e.g. to mimic expiry."""
        self.state.token = value

    def add_bundle(self, bundle: Resource) -> str:
        """Adds a patient until the next ``reset()``; returns the patient id."""
        return self.state.add_bundle(bundle)

    def set_mode(
        self,
        mode: str,
        scope: str | None = None,
        *,
        seconds: float = 1.0,
        times: int | None = None,
    ) -> None:
        """Injects a failure for paths under ``scope`` (``"Observation"``, ``"Patient/p1"``;
        None for every path). ``seconds`` is the ``slow`` delay; ``times`` makes the failure
        transient, to test retries. The most specific scope wins."""
        self.state.set_mode(scope or "", ErrorMode(mode, seconds=seconds, remaining=times))

    def clear_mode(self, scope: str | None = None) -> None:
        """Clears one scope's mode, or all modes when ``scope`` is None."""
        self.state.clear_mode(scope)

    def clear_requests(self) -> None:
        with self.state.lock:
            self.state.requests.clear()

    def reset(self) -> None:
        """Forgets requests, modes, added bundles, page tokens and token changes."""
        self.state.reset()

    def start(self) -> FhirTestServer:
        if self._thread is not None:
            raise RuntimeError("server already started")
        # Binding here lets the OS pick a free port and tells us which before uvicorn starts.
        # An explicit IPPROTO_TCP makes asyncio set TCP_NODELAY on accepted connections;
        # without it, Nagle's algorithm adds 40 ms to every keep-alive response.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind((HOST, 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(self.state),
            log_config=None,  # Leave the test process's logging configuration alone.
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,  # Do not let a pending `slow` request stall teardown.
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name="fhir-test-server",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                sock.close()
                raise RuntimeError("FHIR test server failed to start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=5)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout=5)
        self._server = None
        self._thread = None
        self.port = None

    def __enter__(self) -> FhirTestServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
