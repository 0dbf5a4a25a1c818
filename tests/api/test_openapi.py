"""The app's OpenAPI document: one submit schema per job type, examples that are accepted, every
route of the contract with its error responses, and a host's own schemas left alone."""

import enum
import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

import pytest
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field, HttpUrl, PositiveInt

import fastapi_equeue as equeue
from fastapi_equeue import EQueue
from tests.api.conftest import ServeApi

SCHEMAS = "#/components/schemas/"
SUBMIT_OPTIONS = {"queue", "priority", "delay", "run_at", "max_attempts", "idempotency_key"}

# The contract's table: every route, and the error statuses its row names.
CONTRACT = {
    ("/jobs", "post"): {"413", "422"},
    ("/jobs", "get"): {"422"},
    ("/jobs/{job_id}", "get"): {"404"},
    ("/jobs/{job_id}/result", "get"): {"404", "409"},
    ("/jobs/{job_id}/cancel", "post"): {"404", "409"},
    ("/jobs/{job_id}/retry", "post"): {"404", "409"},
    ("/jobs/stats", "get"): set(),
}


class Address(BaseModel):
    """Where a letter goes."""

    street: str
    city: str


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


def letter_tasks(queue: EQueue) -> None:
    """A task with parameters of many types, besides the conftest's ``add`` and friends."""

    @queue.task(name="send-letter")
    def send_letter(
        to: Address,
        pages: int,
        deliver_at: datetime,
        sender: str,
        weight: float,
        express: bool,
        reference: uuid.UUID,
        posted_on: date,
        colour: Colour,
        size: Literal["A4", "A5"],
        note: str = "",
        tags: list[str] | None = None,
    ) -> None:
        """Print and post a letter.

        Pages are printed on both sides.
        """


def constrained_tasks(queue: EQueue) -> None:
    """Tasks whose parameters carry constraints that a naive example breaks."""

    @queue.task
    def resize(image_id: PositiveInt, width: Annotated[int, Field(ge=16, le=4096)]) -> None:
        """Resize an image."""

    @queue.task
    def fetch(url: HttpUrl) -> None:
        """Fetch a page."""

    @queue.task
    def label(
        code: Annotated[str, Field(min_length=10)], ids: Annotated[list[int], Field(min_length=1)]
    ) -> None:
        """Print a label."""


async def _openapi(serve_api: ServeApi, **options: Any) -> dict[str, Any]:
    async with serve_api(concurrency=0, **options) as api:
        response = await api.http.get("/openapi.json")
        assert response.status_code == 200
        schema: dict[str, Any] = response.json()
        assert schema == api.app.openapi()
    return schema


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith(SCHEMAS), ref
        node = schema["components"]["schemas"][ref.removeprefix(SCHEMAS)]
    return node


def _submit_body(schema: dict[str, Any], path: str = "/jobs") -> dict[str, Any]:
    body: dict[str, Any] = schema["paths"][path]["post"]["requestBody"]["content"][
        "application/json"
    ]
    return body


def _job_schema(schema: dict[str, Any], job_type: str) -> dict[str, Any]:
    mapping = _submit_body(schema)["schema"]["discriminator"]["mapping"]
    return _resolve(schema, {"$ref": mapping[job_type]})


def _payload_schema(schema: dict[str, Any], job_type: str) -> dict[str, Any]:
    return _resolve(schema, _job_schema(schema, job_type)["properties"]["payload"])


async def test_submit_body_is_one_of_a_schema_per_job_type_discriminated_on_job_type(
    serve_api: ServeApi,
) -> None:
    schema = await _openapi(serve_api, tasks=letter_tasks)
    body = _submit_body(schema)["schema"]
    job_types = {"add", "fail", "hold", "flaky", "echo", "slow_add", "send-letter"}

    assert body["discriminator"]["propertyName"] == "job_type"
    assert set(body["discriminator"]["mapping"]) == job_types
    assert sorted(ref["$ref"] for ref in body["oneOf"]) == sorted(
        body["discriminator"]["mapping"].values()
    )
    assert _submit_body(schema).get("schema") is body
    for job_type in job_types:
        job = _job_schema(schema, job_type)
        assert job["properties"]["job_type"]["const"] == job_type
        assert "job_type" in job["required"]
        assert set(job["properties"]) >= SUBMIT_OPTIONS
    assert schema["paths"]["/jobs"]["post"]["requestBody"]["required"] is True


async def test_each_payload_schema_lists_the_task_parameters_with_their_types(
    serve_api: ServeApi,
) -> None:
    schema = await _openapi(serve_api, tasks=letter_tasks)
    add = _payload_schema(schema, "add")
    letter = _payload_schema(schema, "send-letter")
    props = letter["properties"]

    assert add["properties"] == {
        "a": {"title": "A", "type": "integer"},
        "b": {"title": "B", "type": "integer"},
    }
    assert set(props) == {
        "to",
        "pages",
        "deliver_at",
        "sender",
        "weight",
        "express",
        "reference",
        "posted_on",
        "colour",
        "size",
        "note",
        "tags",
    }
    assert props["pages"]["type"] == "integer"
    assert props["sender"]["type"] == "string"
    assert props["weight"]["type"] == "number"
    assert props["express"]["type"] == "boolean"
    assert (props["deliver_at"]["type"], props["deliver_at"]["format"]) == ("string", "date-time")
    assert props["reference"]["format"] == "uuid"
    assert props["posted_on"]["format"] == "date"
    assert set(_resolve(schema, props["colour"])["enum"]) == {"red", "blue"}
    assert set(props["size"]["enum"]) == {"A4", "A5"}
    assert "$ref" in props["to"]
    address = _resolve(schema, props["to"])
    assert set(address["properties"]) == {"street", "city"}
    assert address["properties"]["street"]["type"] == "string"
    # No parameter beyond the task's is accepted.
    assert letter.get("additionalProperties") is False
    assert add.get("additionalProperties") is False


async def test_required_parameters_are_required_and_those_with_defaults_are_not(
    serve_api: ServeApi,
) -> None:
    schema = await _openapi(serve_api, tasks=letter_tasks)
    letter = _payload_schema(schema, "send-letter")

    assert set(_payload_schema(schema, "add")["required"]) == {"a", "b"}
    assert set(letter["required"]) == set(letter["properties"]) - {"note", "tags"}
    assert letter["properties"]["note"]["default"] == ""
    assert "required" not in _payload_schema(schema, "hold")
    # A job type whose parameters all have defaults may be sent without a payload.
    assert "payload" not in _job_schema(schema, "fail")["required"]
    assert "payload" in _job_schema(schema, "add")["required"]


async def test_the_task_docstring_is_the_job_schema_description(serve_api: ServeApi) -> None:
    schema = await _openapi(serve_api, tasks=letter_tasks)
    examples = _submit_body(schema)["examples"]

    assert _job_schema(schema, "send-letter")["description"] == (
        "Print and post a letter.\n\nPages are printed on both sides."
    )
    assert _job_schema(schema, "add")["description"] == (
        "Add two integers.\n\nThe sum is the job's result."
    )
    assert examples["send-letter"]["description"] == "Print and post a letter."


async def test_each_job_type_has_an_example_that_is_accepted(serve_api: ServeApi) -> None:
    async with serve_api(concurrency=0, tasks=letter_tasks) as api:
        schema = (await api.http.get("/openapi.json")).json()
        examples = _submit_body(schema)["examples"]
        responses = {
            job_type: await api.http.post("/jobs", json=example["value"])
            for job_type, example in examples.items()
        }
        stored = {job.job_type for job in (await api.queue.client.list(limit=500)).items}

    assert set(examples) == set(_submit_body(schema)["schema"]["discriminator"]["mapping"])
    assert {job_type: r.status_code for job_type, r in responses.items()} == dict.fromkeys(
        examples, 201
    )
    assert all(e["value"]["job_type"] == job_type for job_type, e in examples.items())
    assert stored == set(examples)


async def test_examples_respect_the_constraints_of_the_parameters(serve_api: ServeApi) -> None:
    # PositiveInt, bounded ints, URLs, minimum lengths: /docs must not offer a body that 422s.
    async with serve_api(concurrency=0, tasks=constrained_tasks) as api:
        examples = _submit_body((await api.http.get("/openapi.json")).json())["examples"]
        responses = {
            job_type: await api.http.post("/jobs", json=examples[job_type]["value"])
            for job_type in ("resize", "fetch", "label")
        }

    assert {job_type: r.status_code for job_type, r in responses.items()} == dict.fromkeys(
        responses, 201
    ), {job_type: r.json() for job_type, r in responses.items()}


async def test_every_route_of_the_contract_is_documented_with_its_error_responses(
    serve_api: ServeApi,
) -> None:
    schema = await _openapi(serve_api, rate_limit="100/minute")
    documented = {
        (path, method): set(operation["responses"])
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    }

    for route, errors in CONTRACT.items():
        assert route in documented, route
        assert errors <= documented[route], (route, documented[route])
        assert documented[route] & {"200", "201"}, route
    assert {"201", "200", "429"} <= documented[("/jobs", "post")]
    conflict = schema["paths"]["/jobs/{job_id}/cancel"]["post"]["responses"]["409"]
    conflict_body = _resolve(schema, conflict["content"]["application/json"]["schema"])
    assert {"detail", "status"} <= set(conflict_body["properties"])
    result = schema["paths"]["/jobs/{job_id}/result"]["get"]
    assert "wait" in {parameter["name"] for parameter in result["parameters"]}
    listing = {p["name"] for p in schema["paths"]["/jobs"]["get"]["parameters"]}
    assert {"status", "job_type", "queue", "limit", "cursor"} <= listing


async def test_under_a_prefix_the_submit_body_is_still_one_schema_per_job_type(
    serve_api: ServeApi,
) -> None:
    schema = await _openapi(serve_api, prefix="/api")
    body = _submit_body(schema, "/api/jobs")["schema"]

    assert "/jobs" not in schema["paths"]
    assert set(body["discriminator"]["mapping"]) >= {"add", "echo"}


class AddJob(BaseModel):
    """The host's own model that happens to share the name of our ``add`` job schema."""

    title: str


class AddPayload(BaseModel):
    """The host's own model that happens to share the name of our ``add`` payload schema."""

    colour: str


def _host_app(model: type[BaseModel]) -> FastAPI:
    app = FastAPI()
    app.include_router(equeue.router)

    @app.post("/host/things")
    async def make_thing(body: model) -> model:  # type: ignore[valid-type]
        return body

    return app


def _host_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema: dict[str, Any] = _host_app(model).openapi()["components"]["schemas"][model.__name__]
    return schema


async def test_a_host_schema_named_like_a_job_schema_is_not_overwritten(
    serve_api: ServeApi,
) -> None:
    host = _host_schema(AddJob)
    schema = await _openapi(serve_api, app=_host_app(AddJob))
    components = schema["components"]["schemas"]

    assert components["AddJob"] == host
    job = _job_schema(schema, "add")
    assert job["properties"]["job_type"]["const"] == "add"
    assert set(_payload_schema(schema, "add")["properties"]) == {"a", "b"}


async def test_a_host_schema_named_like_a_payload_schema_is_not_taken_for_ours(
    serve_api: ServeApi,
) -> None:
    host = _host_schema(AddPayload)
    schema = await _openapi(serve_api, app=_host_app(AddPayload))
    components = schema["components"]["schemas"]

    assert components["AddPayload"] == host
    # The add job's payload must still be a, b: not the host's model of the same name.
    assert set(_payload_schema(schema, "add")["properties"]) == {"a", "b"}


async def test_a_host_custom_openapi_is_kept_and_extended(serve_api: ServeApi) -> None:
    # FastAPI's documented way to extend the schema: replace app.openapi.
    app = FastAPI()
    app.include_router(equeue.router)

    def custom_openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = get_openapi(title="Host API", version="9.9", routes=app.routes)
        document["info"]["x-logo"] = {"url": "https://example.com/logo.png"}
        app.openapi_schema = document
        return document

    app.openapi = custom_openapi  # type: ignore[method-assign]
    schema = await _openapi(serve_api, app=app)

    assert schema["info"]["title"] == "Host API"
    assert schema["info"]["x-logo"] == {"url": "https://example.com/logo.png"}
    assert "add" in _submit_body(schema)["schema"]["discriminator"]["mapping"]


@pytest.mark.parametrize("prefix", ["", "/api"])
async def test_the_openapi_document_is_the_same_on_every_request(
    serve_api: ServeApi, prefix: str
) -> None:
    async with serve_api(concurrency=0, prefix=prefix) as api:
        first = (await api.http.get("/openapi.json")).json()
        second = (await api.http.get("/openapi.json")).json()
        docs = await api.http.get("/docs")

    assert first == second
    assert docs.status_code == 200
