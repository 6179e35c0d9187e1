"""LeanRoute: the endpoint gets its path parameters and the request, and must answer a Response."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.testclient import TestClient
from starlette.responses import JSONResponse

from cds_service.lean_route import LeanRoute


def _app(endpoint: object, path: str = "/things/{thing_id}") -> FastAPI:
    router = APIRouter()
    router.add_api_route(path, endpoint, methods=["POST"], route_class_override=LeanRoute)  # type: ignore[arg-type]
    app = FastAPI()
    app.include_router(router)
    return app


def test_the_endpoint_gets_the_path_parameter_and_the_request() -> None:
    async def thing(thing_id: str, request: Request) -> JSONResponse:
        return JSONResponse({"id": thing_id, "body": (await request.body()).decode()})

    app = _app(thing)
    with TestClient(app) as client:
        answer = client.post("/things/a%20b", content=b"hello")
    assert answer.status_code == 200
    assert answer.json() == {"id": "a b", "body": "hello"}
    assert "/things/{thing_id}" in app.openapi()["paths"]


def test_an_endpoint_without_the_request_is_refused_when_the_route_is_made() -> None:
    async def thing(thing_id: str) -> JSONResponse:
        return JSONResponse({})

    with pytest.raises(TypeError, match="takes `request`"):
        _app(thing)


def test_an_endpoint_with_other_parameters_is_refused_when_the_route_is_made() -> None:
    async def thing(thing_id: str, request: Request, limit: int = 3) -> JSONResponse:
        return JSONResponse({})

    with pytest.raises(TypeError, match="only its path parameters"):
        _app(thing)


def test_an_endpoint_that_answers_no_response_is_a_fault() -> None:
    async def thing(thing_id: str, request: Request) -> dict[str, str]:
        return {"id": thing_id}

    with TestClient(_app(thing), raise_server_exceptions=False) as client:
        assert client.post("/things/x").status_code == 500


def test_a_route_with_dependencies_is_refused_when_the_route_is_made() -> None:
    async def authenticate() -> None:
        raise AssertionError("never called by a LeanRoute")

    async def thing(thing_id: str, request: Request) -> JSONResponse:
        return JSONResponse({})

    router = APIRouter(dependencies=[Depends(authenticate)])
    with pytest.raises(TypeError, match="no dependencies"):
        router.add_api_route(
            "/things/{thing_id}", thing, methods=["POST"], route_class_override=LeanRoute
        )
