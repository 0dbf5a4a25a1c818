"""The EQueue options: the spec's defaults, and a ConfigurationError naming every bad one."""

import math
from datetime import timedelta
from typing import Any

import pytest

from fastapi_equeue import EQueue
from fastapi_equeue.config import Config
from fastapi_equeue.errors import ConfigurationError

URL = "sqlite+aiosqlite:///./equeue.db"


def test_defaults_are_the_contracts() -> None:
    config = Config(URL)

    assert config.concurrency == 10
    assert config.queues is None
    assert config.poll_interval == 1.0
    assert config.heartbeat_interval == 5.0
    assert config.stalled_after == 30.0
    assert config.shutdown_grace == 10.0
    assert config.max_payload_bytes == 1024 * 1024
    assert config.auto_migrate is True
    assert config.retention == 7 * 86400
    assert config.failed_retention == 30 * 86400
    assert (config.pool_size, config.listen_url, config.poll_only) == (None, None, False)


def test_equeue_passes_its_keywords_to_the_config() -> None:
    queue = EQueue(URL, concurrency=0, queues=["mail", "images"], poll_interval=0.25)

    assert queue.config.concurrency == 0
    assert queue.config.queues == ("mail", "images")
    assert queue.config.poll_interval == 0.25


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("concurrency", -1),
        ("concurrency", 2.5),
        ("concurrency", True),
        ("concurrency", "10"),
        ("max_payload_bytes", 0),
        ("max_payload_bytes", -1),
        ("max_payload_bytes", 1.5),
        ("poll_interval", 0),
        ("poll_interval", -0.5),
        ("poll_interval", math.inf),
        ("poll_interval", math.nan),
        ("poll_interval", "1"),
        ("poll_interval", True),
        ("heartbeat_interval", 0),
        ("heartbeat_interval", None),
        ("stalled_after", 0),
        ("stalled_after", -30.0),
        ("shutdown_grace", -1),
        ("shutdown_grace", math.inf),
        ("queues", ()),
        ("database_url", "equeue.db"),
        ("database_url", None),
        ("retention", 0),
        ("retention", -1.0),
        ("retention", math.inf),
        ("failed_retention", "30 days"),
        ("pool_size", 0),
        ("pool_size", 2.5),
        ("listen_url", "db.example.com"),
        ("listen_url", 5432),
        ("poll_only", "yes"),
    ],
)
def test_bad_option_raises_configuration_error_naming_it(option: str, value: Any) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Config(**{"database_url": URL, option: value})

    assert option in str(caught.value)


@pytest.mark.parametrize("queues", [("",), ("mail", "x" * 201), ("mail", 3)])
def test_bad_queue_name_is_refused(queues: tuple[Any, ...]) -> None:
    with pytest.raises(ConfigurationError, match="queue name"):
        Config(URL, queues=queues)


def test_zero_shutdown_grace_is_allowed() -> None:
    assert Config(URL, shutdown_grace=0).shutdown_grace == 0


def test_zero_concurrency_means_enqueue_only_and_is_allowed() -> None:
    assert Config(URL, concurrency=0).concurrency == 0


@pytest.mark.parametrize(
    ("heartbeat_interval", "stalled_after"), [(5.0, 5.0), (5.0, 4.0), (10.0, 1.0)]
)
def test_stalled_after_must_exceed_heartbeat_interval(
    heartbeat_interval: float, stalled_after: float
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Config(URL, heartbeat_interval=heartbeat_interval, stalled_after=stalled_after)

    assert "stalled_after" in str(caught.value)
    assert "heartbeat_interval" in str(caught.value)


def test_stalled_after_just_above_heartbeat_interval_is_allowed() -> None:
    config = Config(URL, heartbeat_interval=5.0, stalled_after=5.5)

    assert config.stalled_after == 5.5


def test_replace_validates_the_copy() -> None:
    config = Config(URL)

    assert config.replace(concurrency=3).concurrency == 3
    assert config.concurrency == 10
    with pytest.raises(ConfigurationError, match="concurrency"):
        config.replace(concurrency=-1)


def test_equeue_validates_its_options() -> None:
    with pytest.raises(ConfigurationError, match="poll_interval"):
        EQueue(URL, poll_interval=0)


def test_equeue_refuses_a_single_string_as_queues() -> None:
    with pytest.raises(ConfigurationError, match="queues"):
        EQueue(URL, queues="mail")


def test_retention_takes_seconds_or_a_timedelta_or_none() -> None:
    queue = EQueue(URL, retention=timedelta(hours=2), failed_retention=None)

    assert queue.config.retention == 7200.0
    assert queue.config.failed_retention is None
    assert EQueue(URL, retention=60).config.retention == 60.0


@pytest.mark.parametrize("value", ["7 days", True, [1]])
def test_equeue_refuses_a_retention_that_is_not_a_duration(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="retention"):
        EQueue(URL, retention=value)
