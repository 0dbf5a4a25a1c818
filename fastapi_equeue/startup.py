"""Reaching the job database at start: at once when it is up, in the background when it is not.

Internal: not covered by semver. A queue whose database is down when the app starts does not
stop the app: it starts, the API answers 503, workers wait, and this keeps trying with capped,
jittered backoff, one log line per try, until the database answers and is migrated. An error
that waiting will not cure (a wrong password, a database that does not exist, a failing
migration) is raised at once instead.
"""

import asyncio
import logging
import random
import sqlite3

from fastapi_equeue.backend import Backend
from fastapi_equeue.backends.outage import is_unavailable
from fastapi_equeue.store import Store

logger = logging.getLogger("fastapi_equeue")

FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0


class Startup:
    """Opens (and with ``migrate``, migrates) ``store``'s backend, then marks it ready."""

    def __init__(self, backend: Backend, store: Store, *, migrate: bool) -> None:
        self._backend = backend
        self._store = store
        self._migrate = migrate
        self._reason = ""

    async def try_once(self) -> bool:
        """One try; ``False`` if the database is unavailable (the reason is on the store)."""
        try:
            await self._backend.open()
            if self._migrate:
                applied = await self._backend.migrate()
                if applied:
                    logger.info("applied migrations %s", ", ".join(applied))
        except Exception as exc:
            if not _worth_waiting_for(exc):
                raise
            self._reason = f"the job database is unavailable ({_describe(exc)})"
            self._store.unready(self._reason)
            return False
        self._store.mark_ready()
        return True

    async def retry(self) -> None:
        """Try until the database is ready, waiting longer each time (up to ``MAX_BACKOFF``)."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        tries = 1
        logger.warning("%s; the queue starts without it and keeps trying", self._reason)
        while True:
            await asyncio.sleep(_delay(tries))
            tries += 1
            try:
                if await self.try_once():
                    logger.info("reached the job database after %.1fs", loop.time() - began)
                    return
            except Exception as exc:
                # Workers waiting for the database stop (a standalone worker exits non-zero);
                # the API goes on answering 503.
                logger.exception("the job database answered, but the queue cannot use it")
                self._store.mark_failed(exc)
                return
            logger.warning(
                "%s; try %d, next in about %.1fs", self._reason, tries, _delay(tries, jitter=False)
            )


def _delay(tries: int, *, jitter: bool = True) -> float:
    """Seconds to wait after ``tries`` failed tries: doubling, capped, and jittered down by up to
    a quarter so that processes started together do not retry together."""
    delay = min(MAX_BACKOFF, FIRST_BACKOFF * 2.0 ** (tries - 1))
    return delay * random.uniform(0.75, 1.0) if jitter else delay


def _worth_waiting_for(exc: BaseException) -> bool:
    # A file that cannot be opened will not open later on its own; a server may come back.
    return is_unavailable(exc) and not isinstance(exc, sqlite3.Error)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
