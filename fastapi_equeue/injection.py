"""``Injection``: the values of a task's injected parameters (``JobContext``, FastAPI ``Depends``)
for one attempt, and the clean-up of its generator dependencies when the attempt ends.

Internal: not covered by semver. The graph is built and checked when the task is registered;
each attempt resolves it as FastAPI resolves an endpoint's: sync functions in a thread,
coroutines on the loop, generators entered into the attempt's exit stack, and one value per
dependency within the attempt unless it says ``use_cache=False``.

FastAPI's own ``get_dependant``/``solve_dependencies`` do not fit: the first turns every
parameter that is not ``Depends`` into an HTTP field (and refuses ``JobContext``, which is no
pydantic type), and the second reads those fields and its exit stacks from an HTTP request's
scope, which a job does not have. So this module walks the signatures itself, with FastAPI's
``Depends`` markers, and allows only ``Depends`` and ``JobContext`` parameters.

FastAPI is never imported here: a ``Depends`` exists only once its user imported FastAPI, and
a standalone worker whose tasks use none stays without it.
"""

import contextlib
import functools
import inspect
import sys
import typing
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import anyio.to_thread

from fastapi_equeue.context import JobContext
from fastapi_equeue.errors import ConfigurationError

Kind = Literal["function", "coroutine", "generator", "async_generator"]


@dataclass(frozen=True, slots=True, eq=False)
class Dependency:
    """One ``Depends`` in the graph: the parameter it fills and how its callable runs."""

    name: str
    call: Callable[..., Any]
    kind: Kind
    use_cache: bool
    context: tuple[str, ...]
    """Its parameters annotated ``JobContext``."""
    dependencies: tuple["Dependency", ...]


@dataclass(frozen=True, slots=True)
class Injection:
    """A task's injected parameters: those annotated ``JobContext`` and those with a
    ``Depends``."""

    context: tuple[str, ...]
    dependencies: tuple[Dependency, ...]

    @property
    def names(self) -> frozenset[str]:
        """The task's parameters this fills (none of them is part of the payload)."""
        return frozenset((*self.context, *(d.name for d in self.dependencies)))

    async def resolve(self, ctx: JobContext, stack: AsyncExitStack) -> dict[str, Any]:
        """The values of the parameters for one attempt; generator dependencies are entered
        into ``stack``, whose closing (at the attempt's end) runs their clean-up."""
        values: dict[str, Any] = dict.fromkeys(self.context, ctx)
        if self.dependencies:
            solver = _Solver(ctx, stack)
            for dependency in self.dependencies:
                values[dependency.name] = await solver.value(dependency)
        return values


def injection_for(
    task: str, parameters: Sequence[tuple[inspect.Parameter, Any]]
) -> Injection | None:
    """The injected parameters among a task's ``(parameter, resolved annotation)``, checked;
    ``None`` if it has none.

    Raises:
        ConfigurationError: a dependency cannot run in a job (a parameter that is neither
            ``Depends`` nor ``JobContext``, a cycle, an unsupported option), naming it.
    """
    context: list[str] = []
    dependencies: list[Dependency] = []
    for parameter, annotation in parameters:
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            continue
        if is_context(annotation):
            context.append(parameter.name)
            continue
        depends = declared_depends(annotation, parameter.default)
        if depends is not None:
            dependencies.append(_dependency(task, parameter.name, depends, annotation, ()))
    if not context and not dependencies:
        return None
    return Injection(tuple(context), tuple(dependencies))


def is_context(annotation: Any) -> bool:
    """Whether a parameter annotated so receives the ``JobContext``."""
    annotation = _bare(annotation)
    return inspect.isclass(annotation) and issubclass(annotation, JobContext)


def declared_depends(annotation: Any, default: Any) -> Any:
    """The FastAPI ``Depends`` a parameter declares (in ``Annotated`` or as its default), or
    ``None``."""
    fastapi_params = sys.modules.get("fastapi.params")
    if fastapi_params is None:
        return None  # FastAPI is not imported, so nothing can be a Depends
    metadata = annotation.__metadata__ if typing.get_origin(annotation) is Annotated else ()
    for marker in (default, *reversed(metadata)):
        if isinstance(marker, fastapi_params.Depends):
            return marker
    return None


def _dependency(
    task: str, name: str, depends: Any, annotation: Any, path: tuple[Callable[..., Any], ...]
) -> Dependency:
    # `Depends()` without a callable depends on the annotated class itself, as in FastAPI.
    call = depends.dependency if depends.dependency is not None else _bare(annotation)
    label = _label(call)
    if not callable(call):
        raise ConfigurationError(f"task {task!r}: parameter {name!r} depends on {call!r}")
    if call in path:
        raise ConfigurationError(f"task {task!r}: dependency {label!r} depends on itself")
    if getattr(depends, "max_concurrency", None) is not None:
        raise ConfigurationError(
            f"task {task!r}: dependency {label!r} sets max_concurrency, which tasks do not "
            "support; limit the queue's concurrency instead"
        )
    try:
        signature = inspect.signature(call, eval_str=True)
    except (NameError, TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"task {task!r}: the signature of dependency {label!r} cannot be read: {exc}"
        ) from None
    context: list[str] = []
    children: list[Dependency] = []
    for parameter in signature.parameters.values():
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        if is_context(parameter.annotation):
            context.append(parameter.name)
            continue
        sub = declared_depends(parameter.annotation, parameter.default)
        if sub is None:
            raise ConfigurationError(
                f"task {task!r}: parameter {parameter.name!r} of dependency {label!r} is "
                "neither Depends(...) nor JobContext; a job has no request to take it from"
            )
        if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise ConfigurationError(
                f"task {task!r}: parameter {parameter.name!r} of dependency {label!r} cannot "
                "be passed by keyword"
            )
        children.append(_dependency(task, parameter.name, sub, parameter.annotation, (*path, call)))
    return Dependency(
        name=name,
        call=call,
        kind=_kind(call),
        use_cache=bool(depends.use_cache),
        context=tuple(context),
        dependencies=tuple(children),
    )


class _Solver:
    """One attempt's resolution: its context, its exit stack and its cache."""

    def __init__(self, ctx: JobContext, stack: AsyncExitStack) -> None:
        self._ctx = ctx
        self._stack = stack
        self._cache: dict[int, Any] = {}  # by the callable's id: the graph keeps it alive

    async def value(self, dependency: Dependency) -> Any:
        key = id(dependency.call)
        if dependency.use_cache and key in self._cache:
            return self._cache[key]
        kwargs: dict[str, Any] = dict.fromkeys(dependency.context, self._ctx)
        for sub in dependency.dependencies:
            kwargs[sub.name] = await self.value(sub)
        value = await self._call(dependency, kwargs)
        # As FastAPI: the first value is the one cached, even for a use_cache=False one.
        self._cache.setdefault(key, value)
        return value

    async def _call(self, dependency: Dependency, kwargs: dict[str, Any]) -> Any:
        call = dependency.call
        if dependency.kind == "coroutine":
            return await call(**kwargs)
        if dependency.kind == "async_generator":
            generator = contextlib.asynccontextmanager(call)(**kwargs)
            return await self._stack.enter_async_context(generator)
        if dependency.kind == "generator":
            # Only a sync generator Depends gets here, so FastAPI is imported already. Its
            # helper runs __enter__ and __exit__ in threads, the exit shielded from
            # cancellation, as for an endpoint.
            from fastapi.concurrency import contextmanager_in_threadpool

            in_thread = contextmanager_in_threadpool(contextlib.contextmanager(call)(**kwargs))
            return await self._stack.enter_async_context(in_thread)
        return await anyio.to_thread.run_sync(functools.partial(call, **kwargs))


def _kind(call: Callable[..., Any]) -> Kind:
    # A callable instance runs as its __call__ does; a class is called, never awaited.
    targets: list[Any] = [call, inspect.unwrap(call)]
    if not (
        inspect.isroutine(call) or inspect.isclass(call) or isinstance(call, functools.partial)
    ):
        dunder = getattr(call, "__call__", None)  # noqa: B004
        targets += [dunder, inspect.unwrap(dunder)] if dunder is not None else []
    if inspect.isclass(call):
        return "function"
    if any(inspect.isasyncgenfunction(target) for target in targets):
        return "async_generator"
    if any(inspect.isgeneratorfunction(target) for target in targets):
        return "generator"
    if any(inspect.iscoroutinefunction(target) for target in targets):
        return "coroutine"
    return "function"


def _bare(annotation: Any) -> Any:
    """``T`` of ``Annotated[T, ...]``; any other annotation as it is."""
    return annotation.__origin__ if typing.get_origin(annotation) is Annotated else annotation


def _label(call: Any) -> str:
    return str(getattr(call, "__qualname__", None) or getattr(call, "__name__", None) or call)
