"""``JobContext``: what a running attempt knows about itself, handed to the task that asks.

A task (or one of its dependencies) gets it through a parameter annotated ``JobContext``; that
parameter is not part of the payload.
"""

import math
from collections.abc import Awaitable, Callable, Generator
from typing import Any

MAX_PROGRESS_MESSAGE_CHARS = 500
"""The longest progress message a task may report."""

Report = Callable[[float, str | None], None]
"""Takes an attempt's validated progress, from any thread."""


class JobContext:
    """The running attempt of a job, as its task sees it.

    Declare a parameter annotated ``JobContext`` and the worker passes it in::

        @queue.task
        async def import_rows(url: str, ctx: JobContext) -> int:
            rows = await fetch(url)
            for done, row in enumerate(rows, 1):
                await store(row)
                await ctx.progress(done / len(rows), f"{done} of {len(rows)} rows")
            return len(rows)

    Attributes:
        job_id: the job's id.
        job_type: the job's type (its task's name).
        queue: the queue the job is in.
        attempt: the number of this attempt, 1 for the first.
        app: the ASGI app whose ``queue.lifespan`` started the queue, or ``None`` (a standalone
            worker, ``async with queue``): what the host's lifespan set up, such as
            ``ctx.app.state.sessionmaker``, is reached through it.
    """

    __slots__ = ("_report", "app", "attempt", "job_id", "job_type", "queue")

    def __init__(
        self,
        *,
        job_id: str,
        job_type: str,
        queue: str,
        attempt: int,
        app: Any = None,
        report: Report | None = None,
    ) -> None:
        """Workers build the context of each attempt. Build one yourself to call a task
        directly (in a unit test, say): without ``report``, its progress goes nowhere."""
        self.job_id = job_id
        self.job_type = job_type
        self.queue = queue
        self.attempt = attempt
        self.app = app
        self._report = report

    def progress(self, fraction: float, message: str | None = None) -> Awaitable[None]:
        """Report how far the attempt got: ``fraction`` from 0.0 to 1.0 and an optional message.

        The job's ``progress`` shows the latest report. Reports are stored at most about once
        a second; the first and the last of an attempt always are. Works from ``async def``
        tasks (``await ctx.progress(0.5)``) and from plain ``def`` ones, which run in a worker
        thread (``ctx.progress(0.5)``): the report is taken at once, and awaiting the result,
        which is already done, is optional.

        Raises:
            ValueError: ``fraction`` is not a number from 0 to 1, or ``message`` is not a
                string of at most ``MAX_PROGRESS_MESSAGE_CHARS`` characters.
        """
        value = _checked_fraction(fraction)
        _check_message(message)
        if self._report is not None:
            self._report(value, message)
        return _DONE

    def __repr__(self) -> str:
        return (
            f"JobContext(job_id={self.job_id!r}, job_type={self.job_type!r}, "
            f"queue={self.queue!r}, attempt={self.attempt!r})"
        )


class _Done:
    """An awaitable that is already finished: awaiting it returns ``None`` at once, and
    leaving it unawaited is no mistake (unlike a coroutine, it never warns)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield


_DONE = _Done()


def _checked_fraction(fraction: object) -> float:
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, int | float)
        or not math.isfinite(fraction)
        or not 0 <= fraction <= 1
    ):
        raise ValueError(f"progress fraction must be a number from 0 to 1, got {fraction!r}")
    return float(fraction)


def _check_message(message: object) -> None:
    if message is None:
        return
    if not isinstance(message, str):
        message_error = f"progress message must be a string or None, got {message!r}"
        raise ValueError(message_error)  # noqa: TRY004 - one error type for every bad report
    if len(message) > MAX_PROGRESS_MESSAGE_CHARS:
        raise ValueError(
            f"progress message must be at most {MAX_PROGRESS_MESSAGE_CHARS} characters, "
            f"got {len(message)}"
        )
    # Neither can be stored: PostgreSQL's JSON refuses NUL, and UTF-8 lone surrogates.
    if "\x00" in message:
        raise ValueError("progress message must not contain a NUL character")
    if not message.isascii():
        try:
            message.encode()
        except UnicodeEncodeError:
            raise ValueError("progress message must be valid Unicode text") from None
