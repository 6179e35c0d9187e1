"""`/docs`: Swagger UI on the service's OpenAPI description, served by the service itself.

FastAPI's own page loads Swagger UI from a CDN, so it stays blank offline, on a hospital
network that blocks the CDN, and under a Content-Security-Policy that allows only the service.
Here the page, its script and its style sheet come from the service (swagger-ui-dist, vendored
unchanged in `swagger_ui/` with its licence), and the page's policy allows nothing else: no
external request, no inline script.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter, HTTPException, Response
from fastapi.responses import HTMLResponse

ASSETS = Path(__file__).parent / "swagger_ui"
PREFIX = "/docs/assets/"
#: What the page may load, by name: anything else is 404.
MEDIA_TYPES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "docs.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "LICENSE": "text/plain; charset=utf-8",
    "NOTICE": "text/plain; charset=utf-8",
    "swagger-ui-bundle.js.LICENSE.txt": "text/plain; charset=utf-8",
}
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'self'"
    ),
    "Referrer-Policy": "no-referrer",
}
#: The assets change only with the service's version.
ASSET_CACHE = "public, max-age=86400"

PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>B12 CDS: API</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{PREFIX}swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{PREFIX}swagger-ui-bundle.js"></script>
<script src="{PREFIX}docs.js"></script>
</body>
</html>
"""


@cache
def _asset(name: str) -> bytes:
    return (ASSETS / name).read_bytes()


def build_router() -> APIRouter:
    api = APIRouter(include_in_schema=False)

    @api.get("/docs")
    async def docs() -> HTMLResponse:
        return HTMLResponse(PAGE, headers=PAGE_HEADERS)

    @api.get(PREFIX + "{name}")
    async def asset(name: str) -> Response:
        media_type = MEDIA_TYPES.get(name)
        if media_type is None:
            raise HTTPException(404)
        return Response(_asset(name), media_type=media_type, headers={"Cache-Control": ASSET_CACHE})

    return api
