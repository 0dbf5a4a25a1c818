"""One attempt of one job: resolve the task and its dependencies, run it under its timeout,
return the outcome.

The executor never writes an outcome. It turns whatever happened (a result, an exception, a
timeout, a cancellation) into ``JobCompleteParams`` for the completer to write; only the
attempt's progress reports (``runtime.progress``) reach the database from here, the last one
before the outcome is handed on.
"""

import asyncio
import functools
import logging
import traceback
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio.to_thread
from anyio import CapacityLimiter

from fastapi_equeue.backend import AttemptError, JobCompleteParams, JobRow
from fastapi_equeue.clock import Clock
from fastapi_equeue.config import MAX_ERROR_CHARS, MAX_TRACEBACK_CHARS
from fastapi_equeue.context import JobContext
from fastapi_equeue.errors import EQueueError
from fastapi_equeue.retry import delay_for
from fastapi_equeue.runtime.attempts import StopReason
from fastapi_equeue.runtime.progress import Progress
from fastapi_equeue.store import Attempt, Store
from fastapi_equeue.tasks import Task, TaskRegistry, encode_json
from fastapi_equeue.tracing import Tracing

logger = logging.getLogger(__name__)


class ResultNotSerialisable(EQueueError):
    """A task returned a value that JSON cannot encode."""


class Executor:
    """Runs attempts for one worker: ``async def`` tasks on the loop, plain ``def`` in threads."""

    def __init__(
        self,
        registry: TaskRegistry,
        *,
        store: Store,
        worker_id: str,
        clock: Clock,
        threads: int,
        app: Any = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._registry = registry
        self._tracing = tracing
        self._store = store
        self._worker_id = worker_id
        self._clock = clock
        self._app = app
        # A limiter of our own: the loop's default executor has too few threads for `threads`
        # blocking tasks at once, and must not be starved by (or starve) the host's own use.
        self._limiter = CapacityLimiter(max(threads, 1))

    async def run(self, job: JobRow, stop_reason: Callable[[], StopReason | None]) -> Attempt:
        """Run one attempt of ``job``; ``stop_reason`` says why, if the runtime cancels it."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        if self._tracing is None:
            outcome = await self._guarded(job, stop_reason)
        else:
            with self._tracing.processing(job):
                outcome = await self._guarded(job, stop_reason)
        return Attempt(job, outcome, loop.time() - started)

    async def _guarded(
        self, job: JobRow, stop_reason: Callable[[], StopReason | None]
    ) -> JobCompleteParams | None:
        try:
            return await self._outcome(job, stop_reason)
        except Exception as exc:
            # A fault of ours rather than the task's: the attempt must still end, or the job
            # would be handed back and run again forever.
            logger.exception("could not run job %s; failing it", job.id)
            return self._failure(job, exc, final=True, task=None)

    async def _outcome(
        self, job: JobRow, stop_reason: Callable[[], StopReason | None]
    ) -> JobCompleteParams | None:
        try:
            task = self._registry.get(job.job_type)
            kwargs = task.arguments(job.payload)
        except EQueueError as exc:
            # A row no registered task can run is not going to get better by retrying.
            return self._failure(job, exc, final=True, task=None)
        if task.injection is None:
            # Most tasks take only their payload: no context, no progress, no clean-up.
            return await self._attempt(job, task, kwargs, None, stop_reason)
        progress = Progress(self._store, job, worker_id=self._worker_id, clock=self._clock)
        try:
            ctx = JobContext(
                job_id=job.id,
                job_type=job.job_type,
                queue=job.queue,
                attempt=job.attempts,
                app=self._app,
                report=progress.report,
            )
            outcome = await self._attempt(job, task, kwargs, ctx, stop_reason)
            if outcome is not None:
                await self._flush(progress, stop_reason)
            return outcome
        finally:
            progress.abort()

    async def _flush(
        self, progress: Progress, stop_reason: Callable[[], StopReason | None]
    ) -> None:
        """Write the attempt's last report before its outcome is handed on: the fence lets it
        in while the job is still processing."""
        try:
            await progress.close()
        except asyncio.CancelledError:
            if stop_reason() is None:
                raise
            # Stopped (again) by the runtime while writing: the outcome matters more.
            _uncancel()

    async def _attempt(
        self,
        job: JobRow,
        task: Task[..., Any],
        kwargs: dict[str, Any],
        ctx: JobContext | None,
        stop_reason: Callable[[], StopReason | None],
    ) -> JobCompleteParams | None:
        try:
            result = await (
                self._timed(task, kwargs) if ctx is None else self._injected(task, kwargs, ctx)
            )
            _check_json(result)
        except asyncio.CancelledError:
            reason = stop_reason()
            if reason is None:
                raise
            # The runtime cancelled this attempt on purpose and wants its outcome, not the error.
            _uncancel()
            return self._stopped(job, reason)
        except Exception as exc:
            return self._failure(job, exc, final=job.attempts >= job.max_attempts, task=task)
        return self._params(job, "completed", result=result)

    async def _injected(self, task: Task[..., Any], kwargs: dict[str, Any], ctx: JobContext) -> Any:
        # Generator dependencies clean up here, after the task and outside its timeout,
        # whatever the attempt's outcome; a clean-up that raises fails the attempt.
        stack = AsyncExitStack()
        try:
            result = await self._timed(task, kwargs, (ctx, stack))
        except BaseException as exc:
            # The clean-up sees the error; one that swallows it does not make the attempt
            # succeed (there is no result to store).
            await stack.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        await stack.aclose()
        return result

    async def _timed(
        self,
        task: Task[..., Any],
        kwargs: dict[str, Any],
        injecting: tuple[JobContext, AsyncExitStack] | None = None,
    ) -> Any:
        try:
            async with asyncio.timeout(task.timeout) as deadline:
                if task.injection is not None and injecting is not None:
                    kwargs.update(await task.injection.resolve(*injecting))
                if task.is_async:
                    return await task.fn(**kwargs)
                return await anyio.to_thread.run_sync(
                    functools.partial(task.fn, **kwargs),
                    limiter=self._limiter,
                    abandon_on_cancel=True,
                )
        except TimeoutError:
            if deadline.expired():
                # Reported as a plain TimeoutError, the name users look for in last_error.
                raise TimeoutError(f"the attempt exceeded its timeout of {task.timeout}s") from None
            raise

    def _stopped(self, job: JobRow, reason: StopReason) -> JobCompleteParams | None:
        if reason == "cancelled":
            return self._params(job, "cancelled")
        if reason == "shutdown":
            return self._params(job, "queued")
        return None

    def _failure(
        self, job: JobRow, exc: BaseException, *, final: bool, task: Task[..., Any] | None
    ) -> JobCompleteParams:
        if self._tracing is not None:
            self._tracing.failed(exc)
        error = AttemptError(
            attempt=job.attempts,
            error=describe(exc),
            traceback=_capped_traceback(exc),
            at=self._clock.now(),
            worker_id=self._worker_id,
        )
        if final or task is None:
            return self._params(job, "failed", error=error)
        delay = delay_for(task.retry_delay, job.attempts)
        return self._params(job, "retrying", error=error, retry_delay=delay)

    def _params(self, job: JobRow, status: Any, **fields: Any) -> JobCompleteParams:
        return JobCompleteParams(
            id=job.id, attempt=job.attempts, worker_id=self._worker_id, status=status, **fields
        )


def _uncancel() -> None:
    current = asyncio.current_task()
    if current is not None:
        current.uncancel()


def _check_json(result: Any) -> None:
    try:
        encode_json(result)
    except (TypeError, ValueError) as exc:
        raise ResultNotSerialisable(
            f"the task returned a {type(result).__name__}, which is not JSON-serialisable: {exc}"
        ) from None


def describe(exc: BaseException) -> str:
    """``"ExceptionType: message"``, capped, even for an exception whose ``str()`` fails."""
    try:
        message = str(exc)
    except Exception:
        message = "<the exception's message could not be rendered>"
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 14] + "...(truncated)"
    return text


def _capped_traceback(exc: BaseException) -> str:
    try:
        text = "".join(traceback.format_exception(exc))
    except Exception:
        return "<the traceback could not be rendered>"
    if len(text) <= MAX_TRACEBACK_CHARS:
        return text
    # The end of a traceback (the raising frame and the message) is the part worth keeping.
    return "...(truncated)\n" + text[-(MAX_TRACEBACK_CHARS - 16) :]
