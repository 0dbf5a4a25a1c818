"""A host's SQLAlchemy session as the connection a write runs on, and code run at its commit.

SQLAlchemy is imported only here, and only when a host passes its session: a worker never
loads it.
"""

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession


async def connection_of(
    session: "AsyncSession | AsyncConnection | None",
) -> "AsyncConnection | None":
    """The connection whose transaction carries a write: the session's, or ``None`` for ours.

    Raises:
        TypeError: ``session`` is neither an ``AsyncSession`` nor an ``AsyncConnection``.
    """
    if session is None:
        return None
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

    if isinstance(session, AsyncConnection):
        return session
    if isinstance(session, AsyncSession):
        return await session.connection()
    raise TypeError(
        "session must be a SQLAlchemy AsyncSession or AsyncConnection, "
        f"got {type(session).__name__}"
    )


def after_commit(conn: "AsyncConnection", callback: Callable[[], None]) -> None:
    """Call ``callback`` once the host's transaction on ``conn`` commits (never on rollback)."""
    from sqlalchemy import event

    event.listen(conn.sync_connection, "commit", lambda _conn: callback(), once=True)
