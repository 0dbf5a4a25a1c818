"""Documents every registered job type in the app's OpenAPI: ``POST /jobs`` takes a union of
one schema per job type, discriminated on ``job_type``, each with its payload schema and an
example, so ``/docs`` offers a ready-to-send body per job type.

The router is one module-level object shared by every app, so it cannot know the tasks; the
queue's lifespan installs this on the app it runs, where the tasks are known.
"""

import inspect
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from fastapi_equeue.api.schemas import JobOptions
from fastapi_equeue.tasks import Task, TaskRegistry

SUBMIT_OPERATION = "equeue_submit_job"
REF = "#/components/schemas/{model}"

OpenAPI = dict[str, Any]


def install(app: Any, registry: TaskRegistry) -> None:
    """Make ``app.openapi()`` describe the job types of ``registry`` (idempotent)."""
    original: Callable[[], OpenAPI] = type(app).openapi.__get__(app)

    def openapi() -> OpenAPI:
        if app.openapi_schema:
            return app.openapi_schema  # type: ignore[no-any-return]
        schema = original()
        describe_job_types(schema, registry)
        return schema

    app.openapi_schema = None
    app.openapi = openapi


def describe_job_types(schema: OpenAPI, registry: TaskRegistry) -> None:
    """Replace the generic body of every ``POST /jobs`` operation in ``schema`` by the union."""
    tasks = sorted(registry, key=lambda task: task.name)
    if not tasks:
        return
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    refs: dict[str, str] = {}
    examples: dict[str, Any] = {}
    for task in tasks:
        model = _job_model(task)
        model_schema = model.model_json_schema(ref_template=REF)
        for name, definition in model_schema.pop("$defs", {}).items():
            components.setdefault(name, definition)
        name = _free_name(components, model.__name__, model_schema)
        components[name] = model_schema
        refs[task.name] = REF.format(model=name)
        examples[task.name] = {
            "summary": task.name,
            "description": _first_line(task),
            "value": {"job_type": task.name, "payload": example_payload(model_schema, components)},
        }
    body = {
        "oneOf": [{"$ref": ref} for ref in refs.values()],
        "discriminator": {"propertyName": "job_type", "mapping": refs},
    }
    for operation in _submit_operations(schema):
        content = operation.setdefault("requestBody", {}).setdefault("content", {})
        content["application/json"] = {"schema": body, "examples": examples}
        operation["requestBody"]["required"] = True


def example_payload(model_schema: OpenAPI, components: OpenAPI) -> dict[str, Any]:
    """A payload that validates: each required field with an example value of its type."""
    payload_schema = _resolve(model_schema["properties"]["payload"], components)
    required = set(payload_schema.get("required", ()))
    example = {}
    for name, prop in payload_schema.get("properties", {}).items():
        prop = _resolve(prop, components)
        if name in required or "examples" in prop:
            example[name] = _example_value(prop, components)
    return example


def _job_model(task: Task[..., Any]) -> type[BaseModel]:
    payload_required = any(f.is_required() for f in task.payload_model.model_fields.values())
    payload_default: Any = ... if payload_required else Field(default_factory=dict)
    description = inspect.getdoc(task.fn) or f"A {task.name!r} job."
    return create_model(
        task.payload_model.__name__.removesuffix("Payload") + "Job",
        __base__=JobOptions,
        __doc__=description,
        job_type=(Literal[task.name], ...),  # type: ignore[arg-type]
        payload=(task.payload_model, payload_default),
    )


def _free_name(components: OpenAPI, name: str, model_schema: OpenAPI) -> str:
    # The host app may have a schema of the same name: never overwrite it.
    candidate = name
    while candidate in components and components[candidate] != model_schema:
        candidate += "_"
    return candidate


def _submit_operations(schema: OpenAPI) -> list[OpenAPI]:
    return [
        operation
        for path in schema.get("paths", {}).values()
        for method, operation in path.items()
        if method == "post" and operation.get("operationId") == SUBMIT_OPERATION
    ]


def _resolve(prop: OpenAPI, components: OpenAPI) -> OpenAPI:
    ref = prop.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        return components.get(ref.rsplit("/", 1)[-1], {})  # type: ignore[no-any-return]
    return prop


def _example_value(prop: OpenAPI, components: OpenAPI, depth: int = 0) -> Any:
    prop = _resolve(prop, components)
    if prop.get("examples"):
        return prop["examples"][0]
    if "default" in prop:
        return prop["default"]
    if "const" in prop:
        return prop["const"]
    if prop.get("enum"):
        return prop["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in prop.get(key, ()) if o.get("type") != "null"]
        if options:
            return _example_value(options[0], components, depth)
    kind = prop.get("type")
    if kind == "object" and depth < 3:
        required = set(prop.get("required", ()))
        return {
            name: _example_value(value, components, depth + 1)
            for name, value in prop.get("properties", {}).items()
            if name in required
        }
    return _scalar_example(kind, prop.get("format"))


def _scalar_example(kind: object, fmt: object) -> Any:
    if kind == "string":
        if fmt == "date-time":
            return datetime(2030, 1, 1, tzinfo=UTC).isoformat()
        if fmt == "date":
            return "2030-01-01"
        if fmt == "email":
            return "user@example.com"
        if fmt == "uuid":
            return "00000000-0000-4000-8000-000000000000"
        return "string"
    return {"integer": 0, "number": 0.0, "boolean": True, "array": []}.get(str(kind), {})


def _first_line(task: Task[..., Any]) -> str:
    doc = inspect.getdoc(task.fn)
    return doc.splitlines()[0] if doc else f"Enqueue a {task.name!r} job."
