"""The dashboard's pure parts: masking, the submit form's fields, the chart's geometry, the
count cache, and who may act."""

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from importlib import resources

import pytest
from pydantic import BaseModel, Field
from starlette.requests import Request

from fastapi_equeue.dashboard import state
from fastapi_equeue.dashboard.access import Forbidden, check_action, is_read_only
from fastapi_equeue.dashboard.charts import PLOT_BOTTOM, PLOT_TOP, throughput_chart
from fastapi_equeue.dashboard.forms import fields_of, payload_from
from fastapi_equeue.dashboard.redact import MASK, redact, redact_text
from fastapi_equeue.errors import InvalidOption
from fastapi_equeue.insight import ThroughputPoint
from fastapi_equeue.testing import eventually


def test_values_under_secret_looking_keys_are_masked_at_any_depth() -> None:
    value = {
        "user": "ann",
        "Password": "p",
        "nested": [{"api_key": "k", "apiKey": "k2", "keep": 1}, {"X-Auth-Token": "t"}],
        "headers": {"Authorization": "Bearer x", "Accept": "json"},
        "client_secret": "s",
        "dsn": "postgresql://u:p@h/db",
        "webhook": "https://user:pw@hooks.example/x",
    }

    assert redact(value) == {
        "user": "ann",
        "Password": MASK,
        "nested": [{"api_key": MASK, "apiKey": MASK, "keep": 1}, {"X-Auth-Token": MASK}],
        "headers": {"Authorization": MASK, "Accept": "json"},
        "client_secret": MASK,
        "dsn": MASK,
        "webhook": f"https://user:{MASK}@hooks.example/x",
    }


def test_text_loses_url_passwords_and_the_hidden_strings() -> None:
    url = "postgresql+asyncpg://app:s3cret@db:5432/app"

    shown = redact_text(f"connect to {url} failed; see redis://:pw@cache:6379/0", hidden=(url,))

    assert shown == f"connect to [database url] failed; see redis://:{MASK}@cache:6379/0"
    assert redact_text("amqp://guest:guest@rabbit//") == f"amqp://guest:{MASK}@rabbit//"


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


class Payload(BaseModel):
    name: str
    count: int = 2
    ratio: float | None = None
    urgent: bool = False
    colour: Colour = Colour.BLUE
    tags: list[str] = Field(default_factory=list, description="labels")


def test_the_form_has_an_input_of_each_fields_kind() -> None:
    fields = {f.name: f for f in fields_of(Payload.model_json_schema())}

    assert {name: f.kind for name, f in fields.items()} == {
        "name": "text",
        "count": "integer",
        "ratio": "json",
        "urgent": "boolean",
        "colour": "choice",
        "tags": "json",
    }
    assert fields["name"].required
    assert not fields["count"].required
    assert fields["count"].default == "2"
    assert fields["colour"].choices == ("red", "blue")
    assert fields["colour"].default == "blue"
    assert fields["tags"].description == "labels"


def test_the_posted_form_becomes_the_payload() -> None:
    fields = fields_of(Payload.model_json_schema())

    payload = payload_from(
        fields, {"name": "n", "count": "7", "ratio": "0.5", "urgent": "true", "tags": '["a"]'}
    )

    assert payload == {"name": "n", "count": 7, "ratio": 0.5, "urgent": True, "tags": ["a"]}
    assert Payload.model_validate(payload).colour is Colour.BLUE
    assert payload_from(fields, {"name": ""}) == {"urgent": False}
    with pytest.raises(InvalidOption, match="count"):
        payload_from(fields, {"count": "seven"})
    with pytest.raises(InvalidOption, match="tags"):
        payload_from(fields, {"tags": "[unclosed"})


def test_the_chart_scales_bars_to_the_busiest_minute() -> None:
    start = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    points = [
        ThroughputPoint(minute=start + timedelta(minutes=i), completed=c, failed=f)
        for i, (c, f) in enumerate([(0, 0), (10, 0), (5, 5), (0, 2)])
    ]

    chart = throughput_chart(points)

    assert chart.peak == 10
    assert (chart.completed, chart.failed) == (15, 7)
    full = PLOT_BOTTOM - PLOT_TOP
    assert [b.completed_height for b in chart.bars] == [0, full, full / 2, 0]
    assert [b.failed_height for b in chart.bars] == [0, 0, full / 2, full / 5]
    assert chart.bars[2].failed_y == PLOT_TOP
    assert (chart.first, chart.last) == ("10:00", "10:03")
    assert "10:02 UTC: 5 completed, 5 failed" in chart.bars[2].title
    assert throughput_chart([]).bars == ()


async def test_a_cheap_count_is_fresh_and_a_slow_one_is_kept_and_refreshed_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loads = 0
    delay = 0.0

    async def load() -> int:
        nonlocal loads
        loads += 1
        await asyncio.sleep(delay)
        return loads

    cached = state.Cached(load)
    assert (await cached.get())[0] == 1
    assert (await cached.get())[0] == 2  # cheap: counted again

    monkeypatch.setattr(state, "CHEAP", 0.0)
    monkeypatch.setattr(state, "KEEP_AT_LEAST", 0.05)
    delay = 0.01
    assert (await cached.get())[0] == 3  # slow from now on: kept
    assert (await cached.get())[0] == 3

    async def reloaded() -> bool:
        return (await cached.get())[0] != 3  # stale: served while a reload runs behind

    assert await eventually(reloaded, timeout=5)
    cached.forget()
    assert (await cached.get())[0] == loads


def request_with(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in {"host": "ops.example", **headers}.items()]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": raw})


def test_an_action_must_come_from_the_dashboards_own_pages() -> None:
    check_action(request_with({"HX-Request": "true"}), read_only=False)
    check_action(
        request_with(
            {"HX-Request": "true", "Sec-Fetch-Site": "same-origin", "Origin": "https://ops.example"}
        ),
        read_only=False,
    )
    # Behind a proxy that passes the client's host on as X-Forwarded-Host.
    check_action(
        request_with(
            {
                "HX-Request": "true",
                "Origin": "https://public.example",
                "X-Forwarded-Host": "public.example",
            }
        ),
        read_only=False,
    )
    for headers in (
        {},
        {"HX-Request": "true", "Sec-Fetch-Site": "cross-site"},
        {"HX-Request": "true", "Origin": "https://evil.example"},
    ):
        with pytest.raises(Forbidden):
            check_action(request_with(headers), read_only=False)
    with pytest.raises(Forbidden, match="read-only"):
        check_action(request_with({"HX-Request": "true"}), read_only=True)


async def test_read_only_may_be_decided_per_request() -> None:
    async def by_role(request: Request) -> bool:
        return request.headers.get("x-role") != "admin"

    assert await is_read_only(request_with({}), True)
    assert not await is_read_only(request_with({}), False)
    assert await is_read_only(request_with({}), by_role)
    assert not await is_read_only(request_with({"x-role": "admin"}), by_role)
    assert await is_read_only(request_with({}), lambda request: True)


async def test_a_read_over_budget_leaves_the_page_without_waiting_and_lands_later() -> None:
    release = asyncio.Event()

    async def load() -> str:
        await release.wait()
        return "counted"

    cached = state.Cached(load)
    assert (await cached.get(budget=0.01))[0] is None  # the page says it is counting
    release.set()

    async def landed() -> str | None:
        return (await cached.get(budget=0.01))[0]

    assert await eventually(landed, timeout=5) == "counted"


async def test_a_failed_first_read_is_the_pages_error() -> None:
    async def load() -> int:
        raise ConnectionError("down")

    cached = state.Cached(load)
    with pytest.raises(ConnectionError):
        await cached.get()


def test_the_vendored_htmx_is_the_published_release_with_its_licence() -> None:
    # htmx.org@2.0.11 from npm, dist/htmx.min.js, unmodified; a new release changes its name.
    static = resources.files("fastapi_equeue.dashboard").joinpath("static")
    script = static.joinpath("htmx-2.0.11.min.js").read_bytes()

    assert hashlib.sha256(script).hexdigest() == (
        "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"
    )
    assert "Zero-Clause BSD" in static.joinpath("LICENSE-htmx.txt").read_text()
