"""A loopback HTTP server answering canned responses, for misbehaviours the FHIR test server
cannot produce: next links to other hosts, redirects, cookies, odd content types."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass
class Canned:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def fhir(cls, resource: dict[str, Any], **headers: str) -> Canned:
        body = json.dumps(resource).encode()
        return cls(200, body, {"Content-Type": "application/fhir+json", **headers})


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


class StubServer:
    """Serves ``routes[path_with_query]``; unknown paths answer 404. Records every request."""

    def __init__(self) -> None:
        self.routes: dict[str, Canned] = {}
        self.requests: list[Seen] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's naming
                stub.requests.append(Seen(self.path, dict(self.headers.items())))
                canned = stub.routes.get(self.path, Canned(404, b"{}"))
                self.send_response(canned.status)
                for name, value in canned.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(canned.body)))
                self.end_headers()
                self.wfile.write(canned.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def base_url(self) -> str:
        return self.origin + "/fhir"

    def __enter__(self) -> StubServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
