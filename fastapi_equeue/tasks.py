"""Tasks (job types) and the per-``EQueue`` registry that maps a ``job_type`` to one.

A task's payload model is built from the function's signature with pydantic: the payload's keys are
the function's keyword arguments, validated against its type hints when a job is enqueued and again
(to build typed arguments) when it runs. Parameters annotated ``JobContext`` or declaring a FastAPI
``Depends`` are injected when the job runs, and are no part of the payload.
"""

import inspect
import json
import math
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, ParamSpec, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from fastapi_equeue.config import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_QUEUE,
    MAX_ATTEMPTS_LIMIT,
    MAX_PAYLOAD_DEPTH,
    MAX_PRIORITY,
    check_queue_name,
)
from fastapi_equeue.errors import ConfigurationError, InvalidPayload, UnknownJobType
from fastapi_equeue.injection import Injection, injection_for
from fastapi_equeue.retry import RetryDelay

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True, eq=False)
class Task(Generic[P, R]):
    """One job type: the function that runs it and how its jobs are scheduled.

    A ``Task`` is still callable like the function it wraps, so ``@queue.task`` does not change
    how the function is called directly (in tests, say).
    """

    fn: Callable[P, R]
    name: str
    queue: str = DEFAULT_QUEUE
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    timeout: float | None = None
    retry_delay: RetryDelay = None
    priority: int = 0
    payload_model: type[BaseModel] = field(init=False)
    is_async: bool = field(init=False)
    injection: Injection | None = field(init=False)
    """The parameters filled when the job runs (``JobContext``, ``Depends``), if any."""

    def __post_init__(self) -> None:
        _validate_options(self)
        object.__setattr__(self, "is_async", inspect.iscoroutinefunction(self.fn))
        parameters = _parameters(self.name, self.fn)
        injection = injection_for(self.name, parameters)
        if injection is not None:
            parameters = [(p, hint) for p, hint in parameters if p.name not in injection.names]
        object.__setattr__(self, "injection", injection)
        object.__setattr__(self, "payload_model", _payload_model(self.name, parameters))

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def validate_payload(self, payload: Mapping[str, Any] | None) -> dict[str, Any]:
        """The payload as it will be stored (JSON-ready), or ``InvalidPayload`` naming the field."""
        return self.prepare_payload(payload)[0]

    def prepare_payload(self, payload: Mapping[str, Any] | None) -> tuple[dict[str, Any], str, int]:
        """``validate_payload``, the stored payload's JSON text (``encode_json``) and its size
        (``payload_size``) in one pass: the text is what gets stored."""
        if payload is None:
            payload = {}
        if not isinstance(payload, Mapping):
            raise InvalidPayload(self.name, "the payload must be a JSON object", [])
        problem = _structure_problem(payload)
        if problem:
            raise InvalidPayload(self.name, problem, [])
        try:
            model = self.payload_model.model_validate(payload)
        except ValidationError as exc:
            raise InvalidPayload(self.name, _describe(exc), _error_list(exc)) from None
        dumped = model.model_dump(mode="json", exclude_unset=True, by_alias=True)
        if model.model_extra:
            self._refuse_injected(model.model_extra)
            dumped.update(model.model_extra)
        try:
            encoded = encode_json(dumped)
            size = encoded_size(encoded)  # a lone surrogate fails here: UTF-8 cannot hold it
        except (TypeError, ValueError) as exc:
            raise InvalidPayload(self.name, f"the payload is not JSON: {exc}", []) from None
        return dumped, encoded, size

    def arguments(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Typed keyword arguments for one call, from a stored payload."""
        try:
            model = self.payload_model.model_validate(payload)
        except ValidationError as exc:
            raise InvalidPayload(self.name, _describe(exc), _error_list(exc)) from None
        kwargs = {
            field.alias or name: getattr(model, name)
            for name, field in type(model).model_fields.items()
        }
        if model.model_extra:
            kwargs.update(model.model_extra)
        return kwargs

    def _refuse_injected(self, extra: Mapping[str, Any]) -> None:
        # A task taking **kwargs accepts unknown keys, but never one naming an injected
        # parameter: the payload cannot stand in for what the worker injects.
        clash = sorted(extra.keys() & self.injection.names) if self.injection else []
        if clash:
            message = "Extra inputs are not permitted"
            raise InvalidPayload(
                self.name,
                "; ".join(f"{key}: {message}" for key in clash),
                [{"loc": [key], "msg": message, "type": "extra_forbidden"} for key in clash],
            )


class TaskRegistry:
    """The tasks of one ``EQueue``, by job type. Never shared between queues."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task[Any, Any]] = {}

    def add(self, task: Task[Any, Any]) -> None:
        """Register ``task``; a second task under the same name is a mistake, not an override."""
        existing = self._tasks.get(task.name)
        if existing is not None and existing.fn is not task.fn:
            raise ConfigurationError(f"a task named {task.name!r} is already registered")
        self._tasks[task.name] = task

    def get(self, job_type: str) -> Task[Any, Any]:
        """The task for ``job_type``, or ``UnknownJobType``. Never imports anything."""
        try:
            return self._tasks[job_type]
        except (KeyError, TypeError):
            raise UnknownJobType(str(job_type)) from None

    def __contains__(self, job_type: object) -> bool:
        return job_type in self._tasks

    def __iter__(self) -> Iterator[Task[Any, Any]]:
        return iter(self._tasks.values())

    def __len__(self) -> int:
        return len(self._tasks)


def _structure_problem(value: Any) -> str | None:
    """What makes ``value`` unstorable in every backend, or ``None``: nesting deeper than
    ``MAX_PAYLOAD_DEPTH`` (database JSON parsers have limits of their own) or a NUL character
    (PostgreSQL refuses it in text and JSON; SQLite's JSON functions cut strings at it)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "the payload contains a NUL character"
        elif isinstance(item, Mapping | list | tuple):
            if level > MAX_PAYLOAD_DEPTH:
                return f"the payload is nested deeper than {MAX_PAYLOAD_DEPTH} levels"
            if isinstance(item, Mapping):
                stack.extend((key, level) for key in item)
                stack.extend((child, level + 1) for child in item.values())
            else:
                stack.extend((child, level + 1) for child in item)
    return None


def encode_json(value: Any) -> str:
    """Strict JSON: NaN and infinities, which no database's JSON type accepts, are refused."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def payload_size(payload: Mapping[str, Any]) -> int:
    """The payload's size as the contract defines it: its JSON encoding in UTF-8 bytes."""
    return encoded_size(encode_json(payload))


def encoded_size(encoded: str) -> int:
    """The size in UTF-8 bytes of JSON text made by ``encode_json``."""
    return len(encoded) if encoded.isascii() else len(encoded.encode())


def _validate_options(task: Task[Any, Any]) -> None:
    # Typed as object: these come from users' decorators and are checked, not trusted.
    name: object = task.name
    max_attempts: object = task.max_attempts
    timeout: object = task.timeout
    priority: object = task.priority
    delay: object = task.retry_delay
    if not isinstance(name, str) or not name or len(name) > 200:
        raise ConfigurationError(f"task name must be a non-empty string, got {name!r}")
    try:
        check_queue_name(task.queue)
    except ValueError as exc:
        raise ConfigurationError(f"task {task.name!r}: {exc}") from None
    if not isinstance(max_attempts, int) or not 1 <= max_attempts <= MAX_ATTEMPTS_LIMIT:
        raise ConfigurationError(
            f"max_attempts of {task.name!r} must be in 1..{MAX_ATTEMPTS_LIMIT}, "
            f"got {task.max_attempts!r}"
        )
    if timeout is not None and not (
        isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0
    ):
        raise ConfigurationError(
            f"timeout of {task.name!r} must be seconds > 0, got {task.timeout!r}"
        )
    if not isinstance(priority, int) or abs(priority) > MAX_PRIORITY:
        raise ConfigurationError(f"priority of {task.name!r} must be a 32-bit integer")
    if not (
        delay is None
        or callable(delay)
        or (isinstance(delay, int | float) and math.isfinite(delay) and delay >= 0)
    ):
        raise ConfigurationError(
            f"retry_delay of {task.name!r} must be seconds >= 0, a callable or None, got {delay!r}"
        )


def _parameters(name: str, fn: Callable[..., Any]) -> list[tuple[inspect.Parameter, Any]]:
    """Each parameter of ``fn`` with its resolved annotation (``Any`` when it has none)."""
    hints = typing.get_type_hints(fn, include_extras=True)
    parameters = []
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.VAR_POSITIONAL):
            raise ConfigurationError(
                f"task {name!r}: parameter {param.name!r} cannot be passed by keyword; "
                "payload keys become keyword arguments"
            )
        parameters.append((param, hints.get(param.name, Any)))
    return parameters


def _payload_model(name: str, parameters: list[tuple[inspect.Parameter, Any]]) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    extra = "forbid"
    for param, annotation in parameters:
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            extra = "allow"
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        # Fields get internal names and take the parameter's name as their alias, so that a
        # parameter may be called `json`, `schema` or `model_config` without clashing with
        # BaseModel's own attributes.
        fields[f"p_{param.name}"] = (annotation, Field(default, alias=param.name))
    config = ConfigDict(extra=extra, arbitrary_types_allowed=False)  # type: ignore[typeddict-item]
    return create_model(f"{_camel(name)}Payload", __config__=config, **fields)


def _camel(name: str) -> str:
    return (
        "".join(part[:1].upper() + part[1:] for part in name.replace("-", "_").split("_")) or "Job"
    )


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "payload"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def _error_list(exc: ValidationError) -> list[dict[str, object]]:
    return [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors()
    ]
