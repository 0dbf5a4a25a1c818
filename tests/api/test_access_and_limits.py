"""Access control is the host's dependencies, on every route; the warning when there are none;
and the per-client limit on submissions."""

import logging
from collections.abc import Callable
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Request, status
from fastapi.routing import APIRoute

import fastapi_equeue as equeue
from fastapi_equeue import ConfigurationError, EQueue, JobStatus
from tests.api.conftest import UNKNOWN_ID, ServeApi

TOKEN = "Bearer let-me-in"
CREDENTIALS = {"authorization": TOKEN}
ADD = {"job_type": "add", "payload": {"a": 1, "b": 2}}


async def require_token(authorization: Annotated[str | None, Header()] = None) -> None:
    if authorization != TOKEN:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "credentials needed", {"WWW-Authenticate": "Bearer"}
        )


AUTH = Depends(require_token)


def _router_routes() -> set[tuple[str, str]]:
    """Every (path, method) the router serves, hidden from the schema or not."""
    return {
        (route.path, method.lower())
        for route in equeue.router.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }


def _documented_routes(app: FastAPI, prefix: str) -> set[tuple[str, str]]:
    return {
        (path.removeprefix(prefix), method)
        for path, item in app.openapi()["paths"].items()
        if path.startswith(f"{prefix}/jobs")
        for method in item
    }


async def _call(
    http: httpx.AsyncClient, route: tuple[str, str], prefix: str, job_id: str, **kw: Any
) -> httpx.Response:
    path, method = route
    body = ADD if (path, method) == ("/jobs", "post") else None
    url = prefix + path.replace("{job_id}", job_id)
    return await http.request(method.upper(), url, json=body, **kw)


# -- dependencies protect every route ------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "/api"])
async def test_every_route_is_401_without_credentials_and_not_with_them(
    serve_api: ServeApi, prefix: str
) -> None:
    async with serve_api(concurrency=0, prefix=prefix, dependencies=[AUTH]) as api:
        routes = _documented_routes(api.app, prefix)
        job = await api.queue.client.enqueue("add", {"a": 1, "b": 2})
        refused = {
            route: (await _call(api.http, route, prefix, job.id)).status_code for route in routes
        }
        untouched = (await api.queue.client.list()).items
        allowed = {
            route: (await _call(api.http, route, prefix, job.id, headers=CREDENTIALS)).status_code
            for route in sorted(routes)
        }
        after = (await api.queue.client.list()).items

    assert routes == _router_routes()
    assert len(routes) >= 7
    assert refused == dict.fromkeys(routes, 401)
    assert [(j.id, j.status) for j in untouched] == [(job.id, JobStatus.QUEUED)]
    assert all(code != 401 and code < 500 for code in allowed.values()), allowed
    assert allowed[("/jobs", "post")] == 201
    assert len(after) == 2


async def test_without_credentials_bad_requests_are_401_and_reveal_nothing(
    serve_api: ServeApi,
) -> None:
    async with serve_api(concurrency=0, dependencies=[AUTH]) as api:
        responses = [
            await api.http.post("/jobs", json={"job_type": "no_such_task"}),
            await api.http.post("/jobs", content=b"{", headers={"content-type": "text/plain"}),
            await api.http.get(f"/jobs/{UNKNOWN_ID}"),
            await api.http.get("/jobs/not-an-id/result", params={"wait": "abc"}),
            await api.http.get("/jobs", params={"limit": 0, "colour": "red"}),
            await api.http.post(f"/jobs/{UNKNOWN_ID}/cancel"),
            await api.http.get("/jobs", headers={"authorization": "Bearer wrong"}),
        ]
        stored = (await api.queue.client.list()).items

    assert [r.status_code for r in responses] == [401] * len(responses)
    assert all(r.json() == {"detail": "credentials needed"} for r in responses)
    assert stored == []


async def test_app_level_dependencies_protect_every_route(serve_api: ServeApi) -> None:
    app = FastAPI(dependencies=[AUTH])
    app.include_router(equeue.router)
    async with serve_api(concurrency=0, app=app) as api:
        job = await api.queue.client.enqueue("add", {"a": 1, "b": 2})
        routes = _documented_routes(app, "")
        refused = {
            route: (await _call(api.http, route, "", job.id)).status_code for route in routes
        }
        allowed = await api.http.get(f"/jobs/{job.id}", headers=CREDENTIALS)

    assert refused == dict.fromkeys(routes, 401)
    assert allowed.status_code == 200


async def test_dependencies_of_an_enclosing_router_protect_every_route(
    serve_api: ServeApi,
) -> None:
    outer = APIRouter()
    outer.include_router(equeue.router)
    app = FastAPI()
    app.include_router(outer, prefix="/admin", dependencies=[AUTH])
    async with serve_api(concurrency=0, app=app) as api:
        job = await api.queue.client.enqueue("add", {"a": 1, "b": 2})
        routes = _documented_routes(app, "/admin")
        refused = {
            route: (await _call(api.http, route, "/admin", job.id)).status_code for route in routes
        }

    assert routes == _router_routes()
    assert refused == dict.fromkeys(routes, 401)


# -- the warning when nothing protects the routes ------------------------------------------------


def _unprotected_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "fastapi_equeue.api" and record.levelno >= logging.WARNING
    ]


async def test_mounted_without_dependencies_warns_once_at_start_up(
    serve_api: ServeApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="fastapi_equeue.api")
    async with serve_api(concurrency=0) as api:
        at_start = _unprotected_warnings(caplog)
        for _ in range(3):
            await api.http.post("/jobs", json=ADD)
            await api.http.get("/jobs")

    warnings = _unprotected_warnings(caplog)
    assert len(at_start) == 1
    assert warnings == at_start
    assert warnings[0].levelno == logging.WARNING
    assert "dependencies" in warnings[0].getMessage()


def _app_level() -> FastAPI:
    app = FastAPI(dependencies=[AUTH])
    app.include_router(equeue.router)
    return app


def _on_include_router() -> FastAPI:
    app = FastAPI()
    app.include_router(equeue.router, dependencies=[AUTH])
    return app


def _in_protected_outer_router() -> FastAPI:
    outer = APIRouter(dependencies=[AUTH])
    outer.include_router(equeue.router)
    app = FastAPI()
    app.include_router(outer)
    return app


@pytest.mark.parametrize(
    "build", [_on_include_router, _app_level, _in_protected_outer_router], ids=lambda f: f.__name__
)
async def test_mounted_with_dependencies_does_not_warn(
    serve_api: ServeApi, caplog: pytest.LogCaptureFixture, build: Callable[[], FastAPI]
) -> None:
    caplog.set_level(logging.WARNING, logger="fastapi_equeue.api")
    async with serve_api(concurrency=0, app=build()) as api:
        refused = await api.http.get("/jobs")

    assert _unprotected_warnings(caplog) == []
    assert refused.status_code == 401


async def test_mounted_twice_once_unprotected_warns(
    serve_api: ServeApi, caplog: pytest.LogCaptureFixture
) -> None:
    app = FastAPI()
    app.include_router(equeue.router, prefix="/admin", dependencies=[AUTH])
    app.include_router(equeue.router, prefix="/public")
    caplog.set_level(logging.WARNING, logger="fastapi_equeue.api")
    async with serve_api(concurrency=0, app=app) as api:
        public = await api.http.get("/public/jobs")
        admin = await api.http.get("/admin/jobs")

    assert len(_unprotected_warnings(caplog)) == 1
    assert (public.status_code, admin.status_code) == (200, 401)


# -- the rate limit on submissions ---------------------------------------------------------------


def _by_header(request: Request) -> str:
    return request.headers.get("x-client", "anonymous")


async def _by_header_async(request: Request) -> str:
    return request.headers.get("x-client", "anonymous")


async def test_the_fourth_submission_in_a_minute_is_429_with_retry_after_and_stores_nothing(
    serve_api: ServeApi,
) -> None:
    async with serve_api(concurrency=0, rate_limit="3/minute") as api:
        accepted = [await api.http.post("/jobs", json=ADD) for _ in range(3)]
        refused = await api.http.post("/jobs", json=ADD)
        stored = (await api.queue.client.list()).items

    assert [r.status_code for r in accepted] == [201, 201, 201]
    assert refused.status_code == 429
    retry_after = refused.headers["retry-after"]
    assert retry_after.isdigit()
    assert 1 <= int(retry_after) <= 60
    assert isinstance(refused.json()["detail"], str)
    assert {job.id for job in stored} == {r.json()["id"] for r in accepted}


async def test_the_limit_is_per_client_address_by_default(serve_api: ServeApi) -> None:
    async with serve_api(concurrency=0, rate_limit="2/minute") as api:
        transport = httpx.ASGITransport(app=api.app, client=("10.9.8.7", 4321))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
            mine = [(await api.http.post("/jobs", json=ADD)).status_code for _ in range(3)]
            theirs = [(await other.post("/jobs", json=ADD)).status_code for _ in range(2)]
        stored = (await api.queue.client.list()).items

    assert mine == [201, 201, 429]
    assert theirs == [201, 201]
    assert len(stored) == 4


@pytest.mark.parametrize("key", [_by_header, _by_header_async], ids=["sync", "async"])
async def test_a_custom_rate_limit_key_limits_per_key(
    serve_api: ServeApi, key: Callable[[Request], Any]
) -> None:
    async with serve_api(concurrency=0, rate_limit="3/minute", rate_limit_key=key) as api:
        alice = {"x-client": "alice"}
        first = [
            (await api.http.post("/jobs", json=ADD, headers=alice)).status_code for _ in range(4)
        ]
        bob = await api.http.post("/jobs", json=ADD, headers={"x-client": "bob"})
        anonymous = await api.http.post("/jobs", json=ADD)
        stored = (await api.queue.client.list()).items

    assert first == [201, 201, 201, 429]
    assert bob.status_code == 201
    assert anonymous.status_code == 201
    assert len(stored) == 5


async def test_other_routes_are_not_limited(serve_api: ServeApi) -> None:
    async with serve_api(concurrency=0, rate_limit="1/minute") as api:
        job_id = (await api.http.post("/jobs", json=ADD)).json()["id"]
        limited = await api.http.post("/jobs", json=ADD)
        reads = [
            (await api.http.request(method, url)).status_code
            for _ in range(5)
            for method, url in [
                ("GET", "/jobs"),
                ("GET", "/jobs/stats"),
                ("GET", f"/jobs/{job_id}"),
                ("GET", f"/jobs/{job_id}/result"),
            ]
        ]
        cancel = await api.http.post(f"/jobs/{job_id}/cancel")
        retry = await api.http.post(f"/jobs/{job_id}/retry")
        cancel_again = await api.http.post(f"/jobs/{job_id}/cancel")

    assert limited.status_code == 429
    assert set(reads) == {200, 409}
    assert [cancel.status_code, retry.status_code, cancel_again.status_code] == [200, 200, 200]


@pytest.mark.parametrize(
    "rate", ["lots", "3/fortnight", "-1/minute", "minute", "3/", "1.5/second", " "]
)
async def test_a_bad_rate_limit_is_a_configuration_error(database_url: str, rate: str) -> None:
    with pytest.raises(ConfigurationError, match="rate_limit"):
        EQueue(database_url, rate_limit=rate)


@pytest.mark.parametrize("rate", ["0/minute", "3/minute;0/hour", ""])
async def test_a_rate_limit_that_never_allows_is_a_configuration_error(
    database_url: str, rate: str
) -> None:
    # "0/minute" would refuse every submission; an empty string is not "no limit" (None is).
    with pytest.raises(ConfigurationError, match="rate_limit"):
        EQueue(database_url, rate_limit=rate)


@pytest.mark.parametrize("rate", ["100/minute;2/hour", "100/minute, 2/hour"])
async def test_every_one_of_several_limits_applies(serve_api: ServeApi, rate: str) -> None:
    async with serve_api(concurrency=0, rate_limit=rate) as api:
        answers = [await api.http.post("/jobs", json=ADD) for _ in range(3)]
        stored = (await api.queue.client.list()).items

    assert [r.status_code for r in answers] == [201, 201, 429]
    assert int(answers[2].headers["Retry-After"]) >= 1
    assert len(stored) == 2
