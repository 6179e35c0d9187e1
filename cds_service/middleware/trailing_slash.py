"""A path with a trailing slash is served as the path without it, never redirected.

Starlette would answer `POST /cds-services/x/` with a 307 to the scheme and host the app sees:
`http://` behind a TLS-terminating proxy, and some clients drop the body on the way. The path
as called is kept in `scope["state"]["called_path"]`: the JWT audience is the URL the client
signed.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class TrailingSlashMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if len(path) > 1 and path.endswith("/"):
            scope = dict(scope)
            scope["state"] = {**scope.get("state", {}), "called_path": path}
            scope["path"] = path.rstrip("/") or "/"
        await self.app(scope, receive, send)
