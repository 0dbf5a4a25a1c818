"""TcpProxy: a TCP forwarder on a free loopback port, run by asyncio in its own thread, whose
controls make the network fail the ways a failover does.

- ``blackhole()``: stop forwarding in both directions without closing anything. Clients see a
  server that vanished silently: writes succeed, replies never come, until their own timeouts.
- ``heal()``: forward again. By default every connection that existed before is closed with a
  TCP RST at once; ``reset_existing=False`` lets them carry on where they stopped instead; and
  ``reset_existing="on_use"`` leaves them silent until their client sends something, then
  resets them, like a new primary that does not know them: the client learns that its
  connection is dead only by using it.
- ``refuse()``: close the listening socket, so new connections are refused, like a server that
  is down; ``heal()`` listens again on the same port.
- ``reset_all()``: RST every current connection, keeping the mode.

The kernel under the proxy still answers TCP (handshakes, ACKs, keepalives), so a blackhole is
seen only by application-level timeouts, never by TCP keepalive or ``TCP_USER_TIMEOUT``.
"""

import asyncio
import contextlib
import enum
import logging
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from tests.faults.harness import HOST, Background, asyncpg_dsn, asyncpg_url

logger = logging.getLogger(__name__)

T = TypeVar("T")

CONTROL_TIMEOUT = 10.0
CHUNK = 65536
# SO_LINGER on, with a zero timeout: close() sends RST instead of FIN.
LINGER_RESET = struct.pack("ii", 1, 0)


class Mode(enum.Enum):
    """What happens to new connections."""

    FORWARD = "forward"
    BLACKHOLE = "blackhole"
    REFUSE = "refuse"


@dataclass(eq=False)
class _Link:
    """One client connection and, once it forwards, its connection to the target."""

    client: asyncio.StreamWriter
    flowing: asyncio.Event
    upstream: asyncio.StreamWriter | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    closed: bool = False
    stale: bool = False
    """Reset as soon as the client sends anything; nothing comes back from the target."""

    def reset(self) -> None:
        """Abort the client side with RST, close the target side, stop forwarding."""
        with contextlib.suppress(OSError):
            sock = self.client.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        self.client.transport.abort()
        self.close()

    def close(self) -> None:
        """Close both sides (FIN) and stop forwarding."""
        self.closed = True
        self.client.close()
        if self.upstream is not None:
            self.upstream.close()
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()


class TcpProxy(Background):
    """Forwards ``127.0.0.1:port`` to ``target_host:target_port`` until :meth:`stop`.

    The controls are plain blocking methods, safe to call from any thread or event loop: each
    returns once the proxy applies it. Use as a context manager, or ``start()`` then ``stop()``.
    """

    def __init__(self, target_port: int, *, target_host: str = HOST) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self.mode = Mode.FORWARD
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- addresses -------------------------------------------------------------------------------

    def url_for(self, database: str) -> str:
        """SQLAlchemy URL of ``database`` through the proxy."""
        return asyncpg_url(self.port, database)

    def dsn_for(self, database: str) -> str:
        """asyncpg DSN of ``database`` through the proxy."""
        return asyncpg_dsn(self.port, database)

    @property
    def connection_count(self) -> int:
        """How many client connections the proxy holds (forwarding or frozen)."""
        return self._call(self._count())

    # -- controls --------------------------------------------------------------------------------

    def blackhole(self) -> None:
        """Freeze every connection, new ones included: nothing is forwarded, nothing closed."""
        self._call(self._blackhole())

    def heal(self, *, reset_existing: bool | Literal["on_use"] = True) -> None:
        """Forward again (listening again after :meth:`refuse`).

        With ``reset_existing`` every connection opened before this call is reset (RST) at once;
        without it, frozen connections resume and deliver what they held; with ``"on_use"``
        each is reset when its client next sends something, and hears nothing before.
        """
        self._call(self._heal(reset_existing))

    def refuse(self) -> None:
        """Stop listening: new connections get ``ECONNREFUSED``. Existing ones are untouched
        (add :meth:`reset_all` for a server that died with its sessions)."""
        self._call(self._refuse())

    def reset_all(self) -> None:
        """RST every current connection; the mode stays as it is."""
        self._call(self._reset_all())

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the proxy's thread and listen on a free loopback port."""
        if self._thread is not None:
            raise RuntimeError("proxy already started")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run, name=f"tcp-proxy->{self.target_port}", daemon=True
        )
        self._thread.start()
        try:
            self._call(self._listen())
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Close every connection and the listener, stop the thread and its loop."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            if thread.is_alive():
                with contextlib.suppress(TimeoutError, RuntimeError):
                    self._call(self._shutdown())
        finally:
            if thread.is_alive():
                loop.call_soon_threadsafe(loop.stop)
            thread.join(CONTROL_TIMEOUT)
            self._loop = self._thread = None

    # -- the proxy's thread ----------------------------------------------------------------------

    def _run(self) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the proxy's loop and wait for its result."""
        if self._loop is None:
            coro.close()
            raise RuntimeError("proxy not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CONTROL_TIMEOUT)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, HOST, self.port, reuse_address=True, limit=CHUNK
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _count(self) -> int:
        return len(self._links)

    async def _blackhole(self) -> None:
        if self.mode is Mode.FORWARD:
            self.mode = Mode.BLACKHOLE
        for link in self._links:
            link.flowing.clear()

    async def _heal(self, reset_existing: bool | Literal["on_use"]) -> None:
        if self.mode is Mode.REFUSE:
            await self._listen()
        self.mode = Mode.FORWARD
        for link in list(self._links):
            if reset_existing == "on_use":
                link.stale = True
                link.flowing.set()
            elif reset_existing:
                link.reset()
            else:
                link.flowing.set()

    async def _refuse(self) -> None:
        self.mode = Mode.REFUSE
        if self._server is not None:
            # Not wait_closed(): from Python 3.12 it also waits for the open connections.
            self._server.close()
            self._server = None

    async def _reset_all(self) -> None:
        for link in list(self._links):
            link.reset()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        tasks = [link.task for link in self._links if link.task is not None]
        for link in list(self._links):
            link.reset()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client connection, from accept to close (asyncio runs this as its own task)."""
        flowing = asyncio.Event()
        if self.mode is Mode.FORWARD:
            flowing.set()
        link = _Link(writer, flowing, task=asyncio.current_task())
        self._links.add(link)
        failed = False
        try:
            # A connection accepted in a blackhole waits, silent, before reaching the target.
            await flowing.wait()
            try:
                upstream_reader, link.upstream = await asyncio.open_connection(
                    self.target_host, self.target_port, limit=CHUNK
                )
            except OSError as exc:
                logger.debug("proxy cannot reach the target: %s", exc)
                failed = True
                return
            pumps = [
                asyncio.create_task(self._pump(link, reader, link.upstream, from_client=True)),
                asyncio.create_task(self._pump(link, upstream_reader, writer, from_client=False)),
            ]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                results = await asyncio.gather(*pumps, return_exceptions=True)
            # A side that failed (rather than ended) is passed on as a reset.
            failed = any(isinstance(result, OSError) for result in results)
        except asyncio.CancelledError:
            # reset() or close() cancelled this link: the task ends normally (Python 3.11 logs a
            # client task that ends cancelled). Any other cancellation goes on.
            if not link.closed:
                raise
        finally:
            self._links.discard(link)
            if failed:
                link.reset()
            else:
                link.close()

    @staticmethod
    async def _pump(
        link: _Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        from_client: bool,
    ) -> None:
        """Copy ``reader`` to ``writer`` while the link flows; return at end of stream.

        What is read while the link is frozen (bytes, or the end of the stream) is held until it
        flows again. A stale link resets once its client has sent something, and passes on
        nothing from the target, not even its end.
        """
        while True:
            data = await reader.read(CHUNK)
            await link.flowing.wait()
            if link.stale:
                if from_client:
                    link.reset()
                    return
                await asyncio.Event().wait()
            if not data:
                return
            writer.write(data)
            await writer.drain()
