"""The submit form: fields generated from a job type's payload schema, and the payload read
back from the posted form.

Strings, numbers, integers, booleans and enums get inputs of their kind; anything else (objects,
arrays, unions) a JSON text area. The payload then goes through the job type's own validation,
whose errors the form shows by field.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi_equeue.errors import InvalidOption


@dataclass(frozen=True, slots=True)
class Field:
    """One input of the form."""

    name: str
    kind: str
    """``text``, ``integer``, ``number``, ``boolean``, ``choice`` or ``json``."""
    required: bool
    title: str
    description: str | None
    default: str
    """The default as the input shows it ('' for none)."""
    choices: tuple[str, ...] = ()


def fields_of(schema: Mapping[str, Any]) -> list[Field]:
    """The inputs for a payload schema (a JSON Schema object, as pydantic writes it)."""
    required = set(schema.get("required", ()))
    fields = []
    for name, prop in schema.get("properties", {}).items():
        kind, choices = _kind(prop, schema.get("$defs", {}))
        default = prop.get("default")
        shown = "" if default is None else json.dumps(default) if kind == "json" else str(default)
        fields.append(
            Field(
                name=name,
                kind=kind,
                required=name in required,
                title=str(prop.get("title", name)),
                description=prop.get("description"),
                default="true" if default is True else shown,
                choices=choices,
            )
        )
    return fields


def payload_from(fields: list[Field], form: Mapping[str, str]) -> dict[str, Any]:
    """The payload the posted form describes; an empty input is left out (the job type's
    validation then names a required one).

    Raises:
        InvalidOption: an input that cannot be read as its kind (named by the field).
    """
    payload: dict[str, Any] = {}
    for field in fields:
        raw = form.get(field.name, "")
        if field.kind == "boolean":
            payload[field.name] = raw in ("true", "on")
            continue
        if raw == "":
            continue
        payload[field.name] = _value(field, raw)
    return payload


def _value(field: Field, raw: str) -> Any:
    try:
        if field.kind == "integer":
            return int(raw)
        if field.kind == "number":
            return float(raw)
        if field.kind == "json":
            return json.loads(raw)
    except ValueError:
        raise InvalidOption(
            field.name, f"is not a valid {field.kind}", location="payload"
        ) from None
    return raw


def _kind(prop: Mapping[str, Any], defs: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    ref = prop.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        prop = defs.get(ref.removeprefix("#/$defs/"), {})
    if "enum" in prop and all(isinstance(v, str) for v in prop["enum"]):
        return "choice", tuple(prop["enum"])
    kind = prop.get("type")
    if kind == "string":
        return "text", ()
    if kind in ("integer", "number", "boolean"):
        return str(kind), ()
    return "json", ()
