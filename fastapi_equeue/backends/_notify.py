"""Fan-out of notifications to this process's listeners; the SQLite notifier is just this.

Internal: not covered by semver.
"""

import logging
from collections.abc import Callable

from fastapi_equeue.backend import Listener, Notification

logger = logging.getLogger(__name__)


class LocalNotifier:
    """Delivers notifications published in this process to this process's listeners.

    Each backend owns one, so two queues in one process never hear each other.
    """

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    async def start(self) -> None:
        """Nothing to connect."""

    async def stop(self) -> None:
        """Nothing to release."""

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` for every notification until the returned function is called."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def publish_local(self, notification: Notification) -> None:
        """Deliver ``notification`` to every listener; a failing one does not stop the rest."""
        for listener in tuple(self._listeners):
            try:
                listener(notification)
            except Exception:
                logger.exception("notification listener failed on %s", notification.kind)
