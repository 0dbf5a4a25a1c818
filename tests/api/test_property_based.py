"""Property-based tests of the ``/jobs`` API, on both backends: never a 5xx, whatever comes in.

- schemathesis generates valid and invalid requests for every operation of the app's own
  OpenAPI (with the per-job-type body schemas that the queue's lifespan installs), including
  the ids of real jobs in every state, and checks each answer against the documented status
  codes, content types, headers and schemas;
- hypothesis fuzzes ids, query strings and raw bodies directly with httpx, against a handful
  of real jobs, and checks that whatever is accepted can be read back;
- hostile inputs are sent explicitly: huge numbers, odd unicode, NUL, very long strings, deeply
  nested JSON, duplicate keys, broken encodings.

The schemathesis cases run synchronously: schemathesis sends them to the app in-process over
ASGI and runs the app's lifespan (the queue and its workers) on its own event loop thread;
``shutdown_lifespans`` stops it when the test ends.
"""

import asyncio
import json
import math
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.schemas import OpenApiSchema

import fastapi_equeue as equeue
from fastapi_equeue import EQueue, JobStatus, QueueClient

Case = schemathesis.Case[Any]

WAIT = 20.0
"""A deadline for seed jobs to finish (they finish in milliseconds)."""

OPERATIONS = (
    "POST /jobs",
    "GET /jobs",
    "GET /jobs/stats",
    "GET /jobs/{job_id}",
    "GET /jobs/{job_id}/result",
    "POST /jobs/{job_id}/cancel",
    "POST /jobs/{job_id}/retry",
    "GET /jobs/queues",
    "POST /jobs/queues/{name}/pause",
    "POST /jobs/queues/{name}/resume",
    "PATCH /jobs/queues/{name}",
    "GET /jobs/schedules",
    "GET /jobs/metrics",
)
JOB_TYPES = ("record", "refuse", "total")

# Every answer that the contract documents, per route (429 only with a rate limit, unused here).
DOCUMENTED = {
    "submit": {200, 201, 413, 422},
    "list": {200, 422},
    "stats": {200},
    "get": {200, 404},
    "result": {200, 404, 409, 422},
    "cancel": {200, 404, 409},
    "retry": {200, 404, 409},
}

# The workers of the app under test use the `random` module for jitter, on their own thread,
# while hypothesis generates the next case: hypothesis sees the global random state change and
# (wrongly, here) blames its strategies.
IGNORE_WORKER_RANDOM = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
)

FUZZ_SETTINGS = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    # No shrinking: a failure reports the first failing example (with a curl line), within the
    # time budget, instead of hundreds of database round trips spent minimising it.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)


class Point(BaseModel):
    """A small model as a task parameter."""

    x: int
    y: int = 0
    label: str | None = None


def register_tasks(queue: EQueue) -> None:
    """Three job types whose parameters cover the usual types: scalars, a datetime, a list, a
    model, a dict, optionals with defaults; async and sync; several queues."""

    @queue.task(max_attempts=2, retry_delay=0)
    async def record(
        count: int,
        name: str,
        ratio: float,
        flag: bool,
        when: datetime,
        numbers: list[int],
        point: Point,
        note: str | None = None,
    ) -> dict[str, Any]:
        """Summarise typed arguments (no strings from the payload in the result)."""
        return {
            "count": count,
            "name_length": len(name),
            "ratio_is_finite": math.isfinite(ratio),
            "flag": flag,
            "year": when.year,
            "numbers": len(numbers),
            "x": point.x,
            "has_note": note is not None,
        }

    @queue.task(max_attempts=1)
    def refuse(reason: str = "refused") -> None:
        """Always fails (a plain function, run in a thread)."""
        raise ValueError(reason[:100])

    @queue.task(queue="batch", priority=5)
    def total(values: list[int], scale: float = 1.0, tags: dict[str, str] | None = None) -> int:
        """Count the values (a plain function, on its own queue)."""
        return len(values) + len(tags or {})


RECORD_PAYLOAD: dict[str, Any] = {
    "count": 3,
    "name": "seed",
    "ratio": 0.5,
    "flag": True,
    "when": "2030-01-01T00:00:00+00:00",
    "numbers": [1, 2],
    "point": {"x": 1, "y": 2},
}


@dataclass(frozen=True)
class Seeds:
    """Real jobs in each state (at the start: the tests' own requests move them on), and a
    cursor that ``GET /jobs`` returned."""

    completed: str
    failed: str
    cancelled: str
    queued: str
    cursor: str

    @property
    def ids(self) -> tuple[str, ...]:
        return (self.completed, self.failed, self.cancelled, self.queued)


async def seed_jobs(client: QueueClient) -> Seeds:
    """Make one completed, one failed, one cancelled and one (delayed) queued job."""
    completed = await client.enqueue("record", RECORD_PAYLOAD)
    failed = await client.enqueue("refuse", {"reason": "seeded"})
    cancelled = await client.enqueue("total", {"values": [1]}, delay=3600)
    await client.cancel(cancelled.id)
    queued = await client.enqueue("total", {"values": [2, 3]}, delay=3600)
    assert (await client.wait(completed.id, timeout=WAIT)).status is JobStatus.COMPLETED
    assert (await client.wait(failed.id, timeout=WAIT)).status is JobStatus.FAILED
    page = await client.list(limit=1)
    assert page.next_cursor is not None
    return Seeds(completed.id, failed.id, cancelled.id, queued.id, page.next_cursor)


def jobs_app(queue: EQueue) -> FastAPI:
    app = FastAPI(lifespan=queue.lifespan)
    app.include_router(equeue.router)
    return app


# -- schemathesis: every operation of the OpenAPI ----------------------------------------------


@dataclass
class LiveSchema:
    """The OpenAPI of a running app (its lifespan runs on schemathesis' loop), and its seeds."""

    schema: OpenApiSchema
    seeds: Seeds
    queue: EQueue


async def _seed_with_own_queue(queue: EQueue) -> Seeds:
    async with queue:
        return await seed_jobs(queue.client)


@pytest.fixture
def live_schema(make_queue: Callable[..., EQueue]) -> Iterator[LiveSchema]:
    """Seed jobs (with a queue of its own), then start the app and load its OpenAPI."""
    seeder = make_queue()
    register_tasks(seeder)
    seeds = asyncio.run(_seed_with_own_queue(seeder))

    queue = make_queue()
    register_tasks(queue)
    app = jobs_app(queue)
    try:
        # Fetching /openapi.json through ASGI starts the app's lifespan, which installs the
        # per-job-type schemas before the document is built.
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        assert queue.started
        yield LiveSchema(schema, seeds, queue)
    finally:
        asgi.shutdown_lifespans()
    assert not queue.started, "the app's lifespan did not end with the test"


def test_the_schema_documents_every_route_and_a_body_per_job_type(
    live_schema: LiveSchema,
) -> None:
    results = list(live_schema.schema.get_all_operations())
    # An Err is an operation that schemathesis cannot read.
    assert all(isinstance(result, Ok) for result in results), results
    labels = {result.ok().label for result in results if isinstance(result, Ok)}
    assert labels == set(OPERATIONS)
    body = live_schema.schema.raw_schema["paths"]["/jobs"]["post"]["requestBody"]
    content = body["content"]["application/json"]
    assert set(content["schema"]["discriminator"]["mapping"]) == set(JOB_TYPES)
    assert set(content["examples"]) == set(JOB_TYPES)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    positive_data_acceptance,
]


def _checks_for(label: str) -> list[Any]:
    """Every check, except "schema-valid data is accepted" where the schema cannot say what
    is valid: a cursor is any string to the schema (it is opaque) but only one that GET /jobs
    returned is accepted; a submission is refused for what JSON Schema does not express (the
    payload's size and depth, NUL, a ``run_at`` out of range), and so is a queue name with a
    NUL or a lone surrogate. Those rightly get a 422."""
    if label in ("GET /jobs", "POST /jobs") or "{name}" in label:
        return [check for check in CHECKS if check is not positive_data_acceptance]
    return CHECKS


def _strategies(label: str, live: LiveSchema) -> st.SearchStrategy[Case]:
    operation = live.schema.find_operation_by_label(label)
    assert operation is not None, label
    positive, negative = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE
    strategies = [operation.as_strategy(positive), operation.as_strategy(negative)]
    if "{job_id}" in label:
        # Generated ids are random strings; real ones come from the seeds, in every state.
        for job_id in live.seeds.ids:
            fixed: dict[str, Any] = {"path_parameters": {"job_id": job_id}}
            if label.endswith("/result"):
                # A waiting job would hold the request for up to ?wait=60 seconds.
                fixed["query"] = {"wait": 0.05}
            strategies += [
                operation.as_strategy(positive, **fixed),
                operation.as_strategy(negative, **fixed),
            ]
    if label == "GET /jobs":
        strategies.append(operation.as_strategy(positive, query={"cursor": live.seeds.cursor}))
    return st.one_of(strategies)


@IGNORE_WORKER_RANDOM
@pytest.mark.parametrize("label", OPERATIONS)
def test_generated_requests_get_documented_answers_and_never_a_server_error(
    live_schema: LiveSchema, label: str
) -> None:
    statuses: list[int] = []
    checks = _checks_for(label)

    @FUZZ_SETTINGS
    @given(case=_strategies(label, live_schema))
    def send(case: Case) -> None:
        response = case.call()
        statuses.append(response.status_code)
        case.validate_response(response, checks=checks)

    send()

    # The generated requests reached the handlers (real ids, valid bodies), not only the
    # validation errors.
    assert any(200 <= status < 300 for status in statuses), sorted(set(statuses))


# -- hypothesis with httpx: ids, query strings and raw bodies ----------------------------------


@dataclass
class LiveApi:
    """The running app, an httpx client to it and its seed jobs."""

    queue: EQueue
    http: httpx.AsyncClient
    seeds: Seeds


@pytest.fixture
async def api(make_queue: Callable[..., EQueue]) -> AsyncIterator[LiveApi]:
    queue = make_queue()
    register_tasks(queue)
    app = jobs_app(queue)
    transport = httpx.ASGITransport(app=app)
    async with (
        queue.lifespan(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
    ):
        yield LiveApi(queue, http, await seed_jobs(queue.client))


ODD_TEXT = st.sampled_from(
    [
        "\x00",
        "a\x00b",
        "\ud800",
        "\udfff\ud800",
        "\u202e\u0645\u0631\u062d\u0628\u0627",
        "\u200b\u200d\ufeff",
        "e\u0301\u0301\u0301",
        "\ufffe\uffff",
        "\U0010ffff",
        "\U0001f4a9" * 50,
        "%00",
        "../..",
        "' OR 1=1 --",
        "x" * 10_000,
    ]
)
TEXT = st.one_of(st.text(max_size=50), ODD_TEXT)
HUGE_NUMBERS = st.sampled_from(
    [10**30, -(10**30), 10**400, 2**63, -(2**63) - 1, 1e308, -1e308, 5e-324]
)
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    HUGE_NUMBERS,
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(TEXT, children, max_size=4)
    ),
    max_leaves=12,
)


def _quoted(text: str) -> str:
    """Percent-encoded UTF-8 (lone surrogates too: invalid UTF-8 on the wire, on purpose)."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


@st.composite
def job_ids(draw: st.DrawFn, seeds: Seeds) -> str:
    """A real id, a real id mangled, or any text; percent-encoded for the path."""
    real = draw(st.sampled_from(seeds.ids))
    job_id = draw(
        st.one_of(
            st.just(real),
            st.sampled_from(
                [
                    real.upper(),
                    real.replace("-", ""),
                    "{" + real + "}",
                    "urn:uuid:" + real,
                    real + "\n",
                    real[:-1],
                    real + "0",
                    " " + real,
                ]
            ),
            # Not "/" nor dot segments: those change the route (the framework's business), not
            # the id.
            TEXT.filter(lambda text: "/" not in text and text.strip(".")),
        )
    )
    return _quoted(job_id) or "%20"


@st.composite
def query_strings(draw: st.DrawFn, seeds: Seeds) -> str:
    """A query string for GET /jobs: known and unknown keys, odd values, real cursors."""
    keys = st.one_of(st.sampled_from(["status", "job_type", "queue", "limit", "cursor"]), TEXT)
    values = st.one_of(
        TEXT,
        st.sampled_from([status.value for status in JobStatus]),
        st.sampled_from(["0", "1", "500", "501", "-1", "1e3", "NaN", str(10**40), ""]),
        st.sampled_from([seeds.cursor, seeds.cursor[:-2], seeds.cursor + "=="]),
        st.sampled_from((*JOB_TYPES, "batch", "default")),
    )
    pairs = draw(st.lists(st.tuples(keys, values), max_size=4))
    return "&".join(f"{_quoted(key)}={_quoted(value)}" for key, value in pairs)


INTEGERS = st.one_of(st.integers(), HUGE_NUMBERS.filter(lambda number: isinstance(number, int)))
FLOATS = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers())
DATETIMES = st.datetimes(timezones=st.timezones()).map(datetime.isoformat)
PAYLOADS = {
    # Payloads that the type hints accept, with odd values where the types allow them.
    "record": st.fixed_dictionaries(
        {
            "count": INTEGERS,
            "name": TEXT,
            "ratio": FLOATS,
            "flag": st.booleans(),
            "when": DATETIMES,
            "numbers": st.lists(INTEGERS, max_size=5),
            "point": st.fixed_dictionaries(
                {"x": INTEGERS}, optional={"y": INTEGERS, "label": st.none() | TEXT}
            ),
        },
        optional={"note": st.none() | TEXT},
    ),
    "refuse": st.fixed_dictionaries({}, optional={"reason": TEXT}),
    "total": st.fixed_dictionaries(
        {"values": st.lists(INTEGERS, max_size=5)},
        optional={"scale": FLOATS, "tags": st.dictionaries(TEXT, TEXT, max_size=3)},
    ),
}
OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "queue": st.one_of(TEXT, JSON_VALUES),
        "priority": st.one_of(st.integers(-150, 150), HUGE_NUMBERS),
        "delay": st.one_of(st.floats(0, 3600), JSON_VALUES),
        "run_at": st.one_of(DATETIMES, TEXT),
        "max_attempts": st.one_of(st.integers(-1, 30), HUGE_NUMBERS),
        "idempotency_key": st.one_of(TEXT, JSON_VALUES),
    },
)


@st.composite
def submit_bodies(draw: st.DrawFn) -> bytes:
    """A POST /jobs body: mostly a well-typed job with odd values and fuzzed options; now and
    then an unknown type, a payload of the wrong shape, or an unknown option."""
    job_type = draw(st.sampled_from(JOB_TYPES))
    body: dict[str, Any] = {"job_type": job_type, "payload": draw(PAYLOADS[job_type])}
    body.update(draw(OPTIONS))
    mangle = draw(st.sampled_from(["none", "none", "none", "job_type", "payload", "extra"]))
    if mangle == "job_type":
        body["job_type"] = draw(st.one_of(TEXT, JSON_VALUES))
    elif mangle == "payload":
        body["payload"] = draw(JSON_VALUES)
    elif mangle == "extra":
        target = body["payload"] if draw(st.booleans()) else body
        target[draw(TEXT)] = draw(JSON_VALUES)
    return json.dumps(body, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


@st.composite
def api_requests(draw: st.DrawFn, seeds: Seeds) -> tuple[str, str, str, bytes | None]:
    """(route, method, url, body) of one request to the jobs API."""
    # Submissions have the most to fuzz: half of the requests.
    route = draw(st.one_of(st.just("submit"), st.sampled_from(sorted(DOCUMENTED))))
    if route == "submit":
        return route, "POST", "/jobs", draw(submit_bodies())
    if route == "list":
        return route, "GET", "/jobs?" + draw(query_strings(seeds)), None
    if route == "stats":
        return route, "GET", "/jobs/stats", None
    job_id = draw(job_ids(seeds))
    if route == "get":
        return route, "GET", f"/jobs/{job_id}", None
    if route == "result":
        wait = draw(st.sampled_from(["", "0", "0.01", "-1", "61", "1e400", "NaN", "inf", "x"]))
        return route, "GET", f"/jobs/{job_id}/result?wait={quote(wait)}", None
    return route, "POST", f"/jobs/{job_id}/{route}", None


async def _readable(api: LiveApi, job: dict[str, Any]) -> None:
    """A job the API returned can be read back, as it was returned, and is listed."""
    again = await api.http.get(f"/jobs/{job['id']}")
    assert again.status_code == 200, again.text
    assert again.json()["payload"] == job["payload"]
    assert again.json()["job_type"] == job["job_type"]
    listed = await api.http.get("/jobs", params={"limit": 500})
    assert listed.status_code == 200, listed.text


@settings(FUZZ_SETTINGS, max_examples=200)
@given(data=st.data())
async def test_fuzzed_ids_queries_and_bodies_never_get_a_server_error(
    api: LiveApi, data: st.DataObject
) -> None:
    route, method, url, body = data.draw(api_requests(api.seeds))
    headers = {"content-type": "application/json"} if body is not None else {}
    response = await api.http.request(method, url, content=body, headers=headers)
    assert response.status_code < 500, response.text
    assert response.status_code in DOCUMENTED[route], response.text
    if route == "submit" and response.status_code in (200, 201):
        await _readable(api, response.json())


# -- hostile inputs, one by one ----------------------------------------------------------------


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _submit(payload: str, job_type: str = '"record"', options: str = "") -> bytes:
    """A raw POST /jobs body (raw, to send what ``json.dumps`` would not produce)."""
    body = f'{{"job_type": {job_type}, "payload": {payload}{options}}}'
    return body.encode("utf-8", "surrogatepass")


def _record(**fields: str) -> str:
    """A raw ``record`` payload: the seed payload with some fields replaced by raw JSON."""
    raw = {name: json.dumps(value) for name, value in RECORD_PAYLOAD.items()}
    raw.update(fields)
    return "{" + ", ".join(f'"{name}": {value}' for name, value in raw.items()) + "}"


@dataclass(frozen=True)
class Hostile:
    """One hostile request, the answers the contract allows for it and, when it is accepted,
    fields the stored job must hold exactly as sent (``"payload.name"`` for a payload key)."""

    name: str
    method: str
    url: str
    body: bytes | None
    allowed: frozenset[int]
    content_type: str = "application/json"
    stored: tuple[tuple[str, Any], ...] = ()


ACCEPTED = frozenset({201})
ACCEPTED_OR_REFUSED = frozenset({201, 422})
REFUSED = frozenset({422})
LISTED_OR_REFUSED = frozenset({200, 422})
NOT_FOUND = frozenset({404})


def post(name: str, body: bytes, allowed: frozenset[int], **stored: Any) -> Hostile:
    """A hostile ``POST /jobs``; ``stored`` as in ``Hostile`` (``payload__name`` for
    ``payload.name``)."""
    fields = tuple((key.replace("__", "."), value) for key, value in stored.items())
    return Hostile(name, "POST", "/jobs", body, allowed, stored=fields)


def get(name: str, url: str, allowed: frozenset[int]) -> Hostile:
    return Hostile(name, "GET", url, None, allowed)


ODD_UNICODE = "\u202eabc\u200b\u200de\u0301\ufeff\U0010ffff\U0001f4a9"
LONG_STRING = "x" * 1_000_000

HOSTILE = [
    # Deep nesting: past the JSON parser's recursion limit, past the payload depth limit, and
    # in an option.
    post("10000-levels-of-lists", _submit(_record(numbers=_nested(10_000))), REFUSED),
    post("10000-levels-of-objects", _submit('{"a": ' * 10_000 + "1" + "}" * 10_000), REFUSED),
    post("10000-levels-as-the-body", _nested(10_000).encode(), REFUSED),
    post("100-levels-in-a-payload-key", _submit(_record(extra=_nested(100))), REFUSED),
    post(
        "900-levels-in-an-option", _submit(_record(), options=f', "queue": {_nested(900)}'), REFUSED
    ),
    # Duplicate keys: the contract does not say which one wins, only that the job is coherent.
    post(
        "duplicate-keys",
        b'{"job_type": "nope", "job_type": "refuse", "payload": {"reason": "a", "reason": "b"}}',
        ACCEPTED_OR_REFUSED,
    ),
    # Huge numbers.
    post(
        "400-digit-integer",
        _submit(_record(count="1" + "0" * 400)),
        ACCEPTED,
        payload__count=10**400,
    ),
    post("5000-digit-integer", _submit(_record(count="9" * 5000)), REFUSED),
    post("1e400-float", _submit(_record(ratio="1e400")), REFUSED),
    post("NaN-literal", _submit(_record(ratio="NaN")), REFUSED),
    post("huge-priority", _submit(_record(), options=', "priority": ' + "9" * 40), REFUSED),
    post(
        "huge-max-attempts", _submit(_record(), options=', "max_attempts": 1' + "0" * 40), REFUSED
    ),
    post("infinite-delay", _submit(_record(), options=', "delay": 1e400'), REFUSED),
    get("huge-limit", "/jobs?limit=" + "9" * 40, REFUSED),
    get("infinite-wait", "/jobs/{completed}/result?wait=1e400", REFUSED),
    # NUL in every kind of field: stored exactly, or refused.
    post(
        "NUL-in-a-payload-string",
        _submit(_record(name='"a\\u0000b"')),
        ACCEPTED_OR_REFUSED,
        payload__name="a\x00b",
    ),
    post(
        "NUL-in-a-payload-key",
        _submit('{"values": [1], "tags": {"\\u0000": "x"}}', '"total"'),
        ACCEPTED_OR_REFUSED,
        payload__tags={"\x00": "x"},
    ),
    post(
        "NUL-in-the-queue",
        _submit(_record(), options=', "queue": "q\\u0000"'),
        ACCEPTED_OR_REFUSED,
        queue="q\x00",
    ),
    post(
        "NUL-in-the-idempotency-key",
        _submit(_record(), options=', "idempotency_key": "\\u0000"'),
        ACCEPTED_OR_REFUSED,
    ),
    post("NUL-in-the-job-type", _submit(_record(), '"record\\u0000"'), REFUSED),
    get("NUL-in-the-job-type-filter", "/jobs?job_type=%00", LISTED_OR_REFUSED),
    get("NUL-in-the-queue-filter", "/jobs?queue=a%00", LISTED_OR_REFUSED),
    get("NUL-in-the-cursor", "/jobs?cursor=%00", REFUSED),
    get("NUL-in-an-id", "/jobs/%00", NOT_FOUND),
    Hostile("NUL-after-a-real-id", "POST", "/jobs/{completed}%00/cancel", None, NOT_FOUND),
    # Odd unicode.
    post(
        "lone-surrogate-in-a-payload-string",
        _submit(_record(name='"\\ud800"')),
        ACCEPTED_OR_REFUSED,
    ),
    post(
        "lone-surrogate-in-the-idempotency-key",
        _submit(_record(), options=', "idempotency_key": "\\udfff"'),
        ACCEPTED_OR_REFUSED,
    ),
    post("lone-surrogate-in-the-job-type", _submit("{}", '"\\ud800"'), REFUSED),
    post(
        "rtl-zero-width-combining-and-astral-text",
        _submit(
            _record(name=json.dumps(ODD_UNICODE, ensure_ascii=False)),
            options=', "queue": "\U0001f4a9\u202e", "idempotency_key": "\u200b\ufffe"',
        ),
        ACCEPTED,
        payload__name=ODD_UNICODE,
        queue="\U0001f4a9\u202e",
    ),
    post("invalid-utf8-bytes", b'{"job_type": "record\xff\xfe", "payload": {}}', REFUSED),
    post("utf8-bom", b"\xef\xbb\xbf" + _submit(_record()), ACCEPTED_OR_REFUSED),
    post("utf16-body", _submit(_record()).decode().encode("utf-16"), ACCEPTED_OR_REFUSED),
    get("odd-unicode-in-an-id", "/jobs/%F0%9F%92%A9%E2%80%AE", NOT_FOUND),
    get("odd-unicode-in-filters", "/jobs?job_type=%F0%9F%92%A9&queue=%E2%80%AE", frozenset({200})),
    get("invalid-utf8-in-a-filter", "/jobs?queue=%FF%FE", LISTED_OR_REFUSED),
    # Very long strings.
    post(
        "1-MB-payload-string",
        _submit(f'{{"reason": "{LONG_STRING}"}}', '"refuse"'),
        ACCEPTED,
        payload__reason=LONG_STRING,
    ),
    post(
        "2-MB-payload-string",
        _submit(f'{{"reason": "{LONG_STRING * 2}"}}', '"refuse"'),
        frozenset({413}),
    ),
    post("100k-character-job-type", _submit("{}", f'"{"r" * 100_000}"'), REFUSED),
    post(
        "10k-character-idempotency-key",
        _submit(_record(), options=f', "idempotency_key": "{"k" * 10_000}"'),
        REFUSED,
    ),
    post(
        "10k-character-queue", _submit(_record(), options=f', "queue": "{"q" * 10_000}"'), REFUSED
    ),
    get("10k-character-id", "/jobs/" + "a" * 10_000, NOT_FOUND),
    get("10k-character-cursor", "/jobs?cursor=" + "c" * 10_000, REFUSED),
    get("10k-character-filter", "/jobs?job_type=" + "t" * 10_000, REFUSED),
    get("1000-unknown-filters", "/jobs?" + "&".join(f"f{n}=1" for n in range(1000)), REFUSED),
    # Not a JSON object.
    post("empty-body", b"", REFUSED),
    post("null-body", b"null", REFUSED),
    post("array-body", b'[{"job_type": "refuse"}]', REFUSED),
    post("truncated-json", b'{"job_type": "refuse", "payload": {', REFUSED),
    Hostile(
        "form-encoded-body",
        "POST",
        "/jobs",
        b"job_type=refuse",
        REFUSED,
        "application/x-www-form-urlencoded",
    ),
    post("payload-is-a-list", _submit("[1, 2]", '"total"'), REFUSED),
    post("payload-is-a-string", _submit('"values"', '"total"'), REFUSED),
    post("job-type-is-an-object", _submit("{}", '{"$ne": null}'), REFUSED),
    # Dates that a database or Python cannot hold once moved to UTC. Last: a job stored with
    # one of them may break reading the jobs that come after.
    post(
        "run-at-with-a-16-hour-offset",
        _submit(_record(), options=', "run_at": "2030-01-01T00:00:00+16:09"'),
        ACCEPTED_OR_REFUSED,
    ),
    post(
        "run-at-in-year-1-east-of-utc",
        _submit(_record(), options=', "run_at": "0001-01-01T00:00:00+05:00"'),
        ACCEPTED_OR_REFUSED,
    ),
    post(
        "run-at-at-the-end-of-9999-west-of-utc",
        _submit(_record(), options=', "run_at": "9999-12-31T23:59:00-05:00"'),
        ACCEPTED_OR_REFUSED,
    ),
]


def _field(job: dict[str, Any], path: str) -> Any:
    value: Any = job
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


async def _total(api: LiveApi) -> int:
    stats = await api.http.get("/jobs/stats")
    assert stats.status_code == 200, stats.text
    return sum(stats.json()["counts"].values())


async def _send_hostile(api: LiveApi, hostile: Hostile) -> str | None:
    """Send ``hostile``; what is wrong with what happened, or ``None``."""
    before = await _total(api)
    url = hostile.url.format(completed=api.seeds.completed)
    headers = {"content-type": hostile.content_type} if hostile.body is not None else {}
    try:
        response = await api.http.request(
            hostile.method, url, content=hostile.body, headers=headers
        )
    except Exception as exc:  # the app raised: a real client gets a 500
        return f"raised {type(exc).__name__}: {str(exc)[:300]}"
    if response.status_code not in hostile.allowed:
        return f"answered {response.status_code} {response.text[:300]!r}"
    if hostile.url != "/jobs":
        return None
    if response.status_code != 201:
        if await _total(api) != before:
            return f"answered {response.status_code}, yet a job was stored"
        return None
    job = response.json()
    for path, sent in hostile.stored:
        if _field(job, path) != sent:
            return f"stored {path} as {_field(job, path)!r:.100}, not as sent: {sent!r:.100}"
    try:
        await _readable(api, job)
    except Exception as exc:
        return f"was stored, but reading it back failed: {type(exc).__name__}: {str(exc)[:300]}"
    return None


async def test_hostile_inputs_get_a_client_error_or_are_stored_intact(api: LiveApi) -> None:
    # One test for all of them (a queue per input would take minutes), reporting every failure.
    failures = {}
    for hostile in HOSTILE:
        failure = await _send_hostile(api, hostile)
        if failure is not None:
            failures[hostile.name] = failure

    # Whatever came in, the queue still takes and runs jobs.
    response = await api.http.post(
        "/jobs", json={"job_type": "total", "payload": {"values": [1, 2, 3]}}
    )
    assert response.status_code == 201, response.text
    result = await api.http.get(f"/jobs/{response.json()['id']}/result", params={"wait": WAIT})
    assert result.status_code == 200, result.text
    assert result.json()["result"] == 3
    assert not failures, "\n".join(f"{name}: {failure}" for name, failure in failures.items())


async def test_an_accepted_hostile_payload_round_trips_exactly(api: LiveApi) -> None:
    name = "\u202e\U0001f4a9\u200b\u200de\u0301\ufeff\ufffe\U0010ffff" + "\u00e9" * 1000
    payload = {**RECORD_PAYLOAD, "name": name, "count": 10**400, "ratio": 5e-324}

    response = await api.http.post(
        "/jobs", json={"job_type": "record", "payload": payload, "idempotency_key": name[:50]}
    )

    assert response.status_code == 201, response.text[:2000]
    job = response.json()
    assert job["payload"]["name"] == name
    assert job["payload"]["count"] == 10**400
    assert job["payload"]["ratio"] == 5e-324
    await _readable(api, job)
    result = await api.http.get(f"/jobs/{job['id']}/result", params={"wait": WAIT})
    assert result.status_code == 200, result.text
    assert result.json()["result"]["count"] == 10**400
    assert result.json()["result"]["name_length"] == len(name)
    # The same key again: the same job, nothing added.
    repeat = await api.http.post(
        "/jobs", json={"job_type": "record", "payload": payload, "idempotency_key": name[:50]}
    )
    assert repeat.status_code == 200, repeat.text[:2000]
    assert repeat.json()["id"] == job["id"]


async def test_idempotency_keys_that_differ_only_after_a_nul_are_different_keys(
    api: LiveApi,
) -> None:
    answers = []
    for key in ("k\x00one", "k\x00two"):
        body = {"job_type": "total", "payload": {"values": [1]}, "idempotency_key": key}
        try:
            answers.append(await api.http.post("/jobs", json=body))
        except Exception as exc:  # the app raised: a real client gets a 500
            pytest.fail(f"key {key!r} raised {type(exc).__name__}: {str(exc)[:300]}")

    statuses = [answer.status_code for answer in answers]
    # Refused (NUL is not allowed in a key), or two jobs: never the first job for the second key.
    assert statuses in ([422, 422], [201, 201]), [answer.text[:300] for answer in answers]
    if statuses == [201, 201]:
        assert answers[0].json()["id"] != answers[1].json()["id"]
