"""A route for the hot endpoints: the endpoint is called without FastAPI's dependency solving.

FastAPI resolves every parameter of every call through its dependency machinery and renders
whatever the endpoint returns through the response model. An endpoint that takes only its path
parameters (strings) and the `Request`, and returns a `Response` itself, needs none of that:
in a profile of the hook call it took several percent of the service's time per answer. The
route stays an `APIRoute`, so the OpenAPI description, the exception handlers and the
middleware see it as before.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response


class LeanRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint
        params = inspect.signature(endpoint).parameters
        names = tuple(name for name in params if name != "request")
        if "request" not in params or not inspect.iscoroutinefunction(endpoint):
            raise TypeError(f"{self.path}: a LeanRoute endpoint is async and takes `request`")
        if set(names) != set(self.param_convertors):
            raise TypeError(f"{self.path}: a LeanRoute endpoint takes only its path parameters")
        if self.dependencies or self.dependant.dependencies:
            # They would never run: a dependency that authenticates would be skipped silently.
            raise TypeError(f"{self.path}: a LeanRoute has no dependencies to solve")

        async def handler(request: Request) -> Response:
            path = request.path_params
            response = await endpoint(request=request, **{name: path[name] for name in names})
            if not isinstance(response, Response):
                raise TypeError(f"{self.path}: a LeanRoute endpoint returns a Response")
            return response

        return handler
