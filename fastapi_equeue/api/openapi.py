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
from fastapi_equeue.errors import EQueueError
from fastapi_equeue.tasks import Task, TaskRegistry

SUBMIT_OPERATION = "equeue_submit_job"
_WRAPPED = "__equeue_wrapped__"
REF = "#/components/schemas/{model}"

OpenAPI = dict[str, Any]


def install(app: Any, registry: TaskRegistry) -> None:
    """Make ``app.openapi()`` describe the job types of ``registry`` (idempotent).

    Wraps whatever ``app.openapi`` is, so a host's own override (FastAPI's documented way to
    extend the schema) keeps working; a second install replaces our wrapper, never nests it.
    """
    current = app.openapi
    original: Callable[[], OpenAPI] = getattr(current, _WRAPPED, current)

    def openapi() -> OpenAPI:
        if app.openapi_schema:
            return app.openapi_schema  # type: ignore[no-any-return]
        schema = original()
        describe_job_types(schema, registry)
        app.openapi_schema = schema
        return schema

    setattr(openapi, _WRAPPED, original)
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
        model_schema = _add_definitions(components, model_schema)
        name = _free_name(components, model.__name__, model_schema)
        components[name] = model_schema
        refs[task.name] = REF.format(model=name)
        payload = example_payload(model_schema, components)
        if _valid(task, payload):
            examples[task.name] = {
                "summary": task.name,
                "description": _first_line(task),
                "value": {"job_type": task.name, "payload": payload},
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


def _add_definitions(components: OpenAPI, model_schema: OpenAPI) -> OpenAPI:
    """Move the schema's ``$defs`` into the components, renaming any that would take the place
    of a different schema of the host's; returns the schema with its references updated."""
    definitions = model_schema.pop("$defs", {})
    renames = {}
    for name, definition in definitions.items():
        free = _free_name(components, name, definition)
        if free != name:
            renames[REF.format(model=name)] = REF.format(model=free)
    if renames:
        definitions = _rewrite_refs(definitions, renames)
        model_schema = _rewrite_refs(model_schema, renames)
    for name, definition in definitions.items():
        target = renames.get(REF.format(model=name), REF.format(model=name)).rsplit("/", 1)[-1]
        components[target] = definition
    return model_schema


def _rewrite_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            key: renames.get(value, value) if key == "$ref" else _rewrite_refs(value, renames)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(item, renames) for item in node]
    return node


def _valid(task: Task[..., Any], payload: dict[str, Any]) -> bool:
    try:
        task.validate_payload(payload)
    except EQueueError:
        return False
    return True


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
    if kind == "array":
        items = prop.get("items", {})
        return [_example_value(items, components, depth + 1)] * int(prop.get("minItems", 0))
    if kind in ("integer", "number"):
        return _number_example(prop, integer=kind == "integer")
    if kind == "string":
        return _string_example(prop)
    return {"boolean": True, "null": None}.get(str(kind), {})


def _number_example(prop: OpenAPI, *, integer: bool) -> int | float:
    low = prop.get("minimum", prop.get("exclusiveMinimum"))
    value: float = 0 if low is None else low + (1 if "exclusiveMinimum" in prop else 0)
    high = prop.get("maximum", prop.get("exclusiveMaximum"))
    if high is not None and value > high:
        value = high
    return int(value) if integer else float(value)


def _string_example(prop: OpenAPI) -> str:
    fmt = prop.get("format")
    known = {
        "date-time": datetime(2030, 1, 1, tzinfo=UTC).isoformat(),
        "date": "2030-01-01",
        "time": "12:00:00",
        "email": "user@example.com",
        "uuid": "00000000-0000-4000-8000-000000000000",
        "uri": "https://example.com/",
        "duration": "PT1S",
    }
    if fmt in known:
        return known[str(fmt)]
    text = "string"
    minimum = int(prop.get("minLength", 0))
    if len(text) < minimum:
        text = text + "x" * (minimum - len(text))
    maximum = prop.get("maxLength")
    return text[: int(maximum)] if maximum is not None else text


def _first_line(task: Task[..., Any]) -> str:
    doc = inspect.getdoc(task.fn)
    return doc.splitlines()[0] if doc else f"Enqueue a {task.name!r} job."
