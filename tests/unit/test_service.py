"""The supervisor: services start in order and stop in the reverse order, and one that ends on
its own (a crash) stops the rest, in order."""

import asyncio

import pytest

from fastapi_equeue.runtime.service import Supervisor


class Recorder:
    """A service that notes what happens to it in a shared log."""

    def __init__(self, name: str, log: list[str], *, crash: bool = False) -> None:
        self.name = name
        self._log = log
        self._crash = crash
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        self._log.append(f"start {self.name}")

    async def run(self) -> None:
        if self._crash:
            await asyncio.sleep(0)
            raise RuntimeError(f"{self.name} broke")
        await self._stopped.wait()
        self._log.append(f"ended {self.name}")

    def stop(self) -> None:
        self._log.append(f"stop {self.name}")
        self._stopped.set()


class FailsToStart(Recorder):
    async def start(self) -> None:
        raise ConnectionError("no database")


async def test_services_start_in_order_and_stop_in_reverse() -> None:
    log: list[str] = []
    supervisor = Supervisor([Recorder(n, log) for n in "abc"], name="test")

    await supervisor.start()
    assert log == ["start a", "start b", "start c"]
    await asyncio.wait_for(supervisor.stop(), 5)

    assert log[3:] == ["stop c", "ended c", "stop b", "ended b", "stop a", "ended a"]
    assert supervisor.failure is None


async def test_a_crash_stops_the_others_in_reverse_order() -> None:
    log: list[str] = []
    services = [Recorder("a", log), Recorder("b", log, crash=True), Recorder("c", log)]
    supervisor = Supervisor(services, name="test")

    await supervisor.start()
    await asyncio.wait_for(supervisor.wait(), 5)

    assert isinstance(supervisor.failure, RuntimeError)
    assert [line for line in log if line.startswith("ended")] == ["ended c", "ended a"]
    assert log.index("stop c") < log.index("stop a")


async def test_a_failed_start_stops_what_started_and_raises() -> None:
    log: list[str] = []
    supervisor = Supervisor(
        [Recorder("a", log), FailsToStart("b", log), Recorder("c", log)], name="test"
    )

    with pytest.raises(ConnectionError):
        await asyncio.wait_for(supervisor.start(), 5)

    assert log == ["start a", "stop a", "ended a"]
