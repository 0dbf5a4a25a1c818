"""The ``EQueue`` keyword options: their defaults and their validation, in one place."""

import math
import re
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import TYPE_CHECKING

from fastapi_equeue.errors import ConfigurationError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

DEFAULT_CONCURRENCY = 10
DEFAULT_POLL_INTERVAL = 1.0
DEFAULT_HEARTBEAT_INTERVAL = 5.0
DEFAULT_STALLED_AFTER = 30.0
DEFAULT_SHUTDOWN_GRACE = 10.0
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
DEFAULT_RETENTION = timedelta(days=7).total_seconds()
"""Seconds completed and cancelled jobs are kept after they finish."""
DEFAULT_FAILED_RETENTION = timedelta(days=30).total_seconds()
"""Seconds failed jobs are kept, for inspection and manual retry."""
DEFAULT_QUEUE = "default"
DEFAULT_MAX_ATTEMPTS = 3
MAX_PRIORITY = 2**31 - 1
MAX_ATTEMPTS_LIMIT = 1000
MAX_LIST_LIMIT = 500
MAX_COUNT = 10_000
"""``QueueClient.count`` counts this far at most."""
MINUTES_PER_DAY = 24 * 60
MAX_QUEUE_NAME = 200
MAX_IDEMPOTENCY_KEY = 255
MAX_DEPENDENCIES = 100
"""The most jobs one job may wait for."""
RELEASE_BATCH = 100
"""Ended jobs whose dependents one sweep releases, at most."""
MAX_TRACEBACK_CHARS = 8192
MAX_ERROR_CHARS = 2000
MAX_PAYLOAD_DEPTH = 64
"""Deeper payloads are refused: databases' JSON parsers have nesting limits of their own."""
COMPLETION_BATCH = 100
COMPLETION_LINGER = 0.01
"""Seconds an outcome may wait for more to share its write, while other jobs are running."""
RATE_MARGIN = 0.05
"""Seconds added to every rate window: a job starts running a few milliseconds after its claim,
and the margin keeps the limit true of the starts as the tasks see them, not only as claimed."""
PRUNE_BATCH = 1000
"""Finished jobs deleted per statement (of each status), so pruning never holds long locks."""
MAX_DELAY = 10 * 365 * 86400.0
"""The longest delay (enqueue ``delay``, ``retry_delay``) in seconds: ten years."""


@dataclass(frozen=True, slots=True)
class Config:
    """One ``EQueue``'s settings; ``validate`` names the first bad field."""

    database_url: str
    concurrency: int = DEFAULT_CONCURRENCY
    queues: tuple[str, ...] | None = None
    poll_interval: float = DEFAULT_POLL_INTERVAL
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    stalled_after: float = DEFAULT_STALLED_AFTER
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    auto_migrate: bool = True
    pool_size: int | None = None
    listen_url: str | None = None
    poll_only: bool = False
    retention: float | None = DEFAULT_RETENTION
    failed_retention: float | None = DEFAULT_FAILED_RETENTION

    def __repr__(self) -> str:
        return redacted_repr(self)

    def __post_init__(self) -> None:
        url: object = self.database_url
        if not isinstance(url, str) or "://" not in url:
            raise ConfigurationError(
                f"database_url must be a SQLAlchemy URL such as 'sqlite+aiosqlite:///./equeue.db', "
                f"got {_shown_url(url)}"
            )
        _require_int("concurrency", self.concurrency, minimum=0)
        _require_int("max_payload_bytes", self.max_payload_bytes, minimum=1)
        if self.pool_size is not None:
            _require_int("pool_size", self.pool_size, minimum=1)
        listen: object = self.listen_url
        if listen is not None and (not isinstance(listen, str) or "://" not in listen):
            raise ConfigurationError(
                f"listen_url must be a PostgreSQL URL or None, got {_shown_url(listen)}"
            )
        if not isinstance(self.poll_only, bool):
            raise ConfigurationError(f"poll_only must be True or False, got {self.poll_only!r}")
        for name in ("poll_interval", "heartbeat_interval", "stalled_after"):
            _require_seconds(name, getattr(self, name), positive=True)
        _require_seconds("shutdown_grace", self.shutdown_grace, positive=False)
        for name in ("retention", "failed_retention"):
            if getattr(self, name) is not None:
                _require_seconds(name, getattr(self, name), positive=True)
        if self.stalled_after <= self.heartbeat_interval:
            raise ConfigurationError(
                f"stalled_after ({self.stalled_after}) must be longer than heartbeat_interval "
                f"({self.heartbeat_interval}), or live workers would be declared lost"
            )
        if self.queues is not None:
            if not self.queues:
                raise ConfigurationError("queues must name at least one queue, or be None for all")
            for queue in self.queues:
                try:
                    check_queue_name(queue)
                except ValueError as exc:
                    raise ConfigurationError(f"queues: {exc}") from None

    def replace(self, **changes: object) -> "Config":
        """A copy with ``changes`` applied and validated."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Config(**values)


# A password given as a query parameter, which libpq and asyncpg accept: its value runs to the
# next "&" (or to the end, which hides more than needed when the text is not a query string).
_QUERY_PASSWORD = re.compile(r"(?i)\b((?:ssl)?password=)[^&]*")


def redact_url(url: str) -> str:
    """``url`` with its passwords replaced by ``***``: the one in the user part
    (``postgresql://user:***@host/db``) and any ``password=`` or ``sslpassword=`` parameter.

    For every log line, error message and repr that shows a database URL. It errs on the side
    of hiding: the user part is taken to end at the last ``@``, as a password may hold an
    unencoded ``/``, ``?`` or ``@`` (which the drivers would misread, but which must not show).
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    rest = _QUERY_PASSWORD.sub(r"\1***", rest)
    userinfo, at, location = rest.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    if colon:
        userinfo = f"{user}:***"
    return f"{scheme}{separator}{userinfo}{at}{location}"


def redacted_repr(instance: "DataclassInstance") -> str:
    """The usual repr of a dataclass ``instance``, with every ``*_url`` field's password
    redacted (see ``redact_url``): reprs end up in logs and tracebacks."""
    shown = []
    for field in fields(instance):
        if not field.repr:
            continue
        value = getattr(instance, field.name)
        if field.name.endswith("_url") and isinstance(value, str):
            value = redact_url(value)
        shown.append(f"{field.name}={value!r}")
    return f"{type(instance).__qualname__}({', '.join(shown)})"


def _shown_url(value: object) -> str:
    # What an error message may show of a URL option: never its password.
    if isinstance(value, str):
        return repr(redact_url(value))
    return "None" if value is None else f"a value of type {type(value).__name__}"


def seconds(name: str, value: float | timedelta | None) -> float | None:
    """``value`` in seconds (a ``timedelta`` or a number), ``None`` kept; ``ConfigurationError``
    naming ``name`` for anything else."""
    given: object = value  # from users: checked, not trusted
    if isinstance(given, timedelta):
        return given.total_seconds()
    if given is None:
        return None
    if isinstance(given, int | float) and not isinstance(given, bool):
        return float(given)
    raise ConfigurationError(f"{name} must be seconds, a timedelta or None, got {value!r}")


def storable_text(value: str) -> bool:
    """Whether every database (and every JSON answer) can hold ``value``: no NUL, and no lone
    surrogate, which UTF-8 cannot encode."""
    if "\x00" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def check_queue_name(queue: object) -> str:
    """``queue`` if it is a usable queue name, else ``ValueError`` saying why."""
    if (
        not isinstance(queue, str)
        or not queue
        or len(queue) > MAX_QUEUE_NAME
        or not storable_text(queue)
    ):
        shown = repr(queue) if len(repr(queue)) <= 60 else repr(queue)[:57] + "..."
        raise ValueError(
            f"a queue name must be a non-empty string of at most {MAX_QUEUE_NAME} characters, "
            f"in UTF-8 and without NUL, got {shown}"
        )
    return queue


def _require_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _require_seconds(name: str, value: object, *, positive: bool) -> None:
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > 0 if positive else value >= 0)
    )
    if not ok:
        bound = "> 0" if positive else ">= 0"
        raise ConfigurationError(
            f"{name} must be a finite number of seconds {bound}, got {value!r}"
        )
