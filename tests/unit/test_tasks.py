"""Tasks: the payload model a task's signature defines, its options, and the per-queue registry."""

import json
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

import pytest
from fastapi import Depends
from pydantic import Field

from fastapi_equeue import JobContext
from fastapi_equeue.errors import ConfigurationError, InvalidPayload, UnknownJobType
from fastapi_equeue.tasks import Task, TaskRegistry, payload_size


async def send_email(recipient_email: str, subject: str, body: str = "") -> dict[str, bool]:
    return {"delivered": True}


def resize(
    image_id: int,
    taken_at: datetime,
    ratio: Decimal,
    owner: UUID,
    sizes: list[int],
    width: Annotated[int, Field(gt=0)] = 640,
    label: str | None = None,
) -> None:
    return None


def make_task(fn: Any, **options: Any) -> Task[Any, Any]:
    return Task(fn=fn, name=options.pop("name", fn.__name__), **options)


def invalid_fields(exc: InvalidPayload) -> list[str]:
    """The payload locations an ``InvalidPayload`` names, as dotted paths."""
    fields = []
    for error in exc.errors:
        location = error["loc"]
        assert isinstance(location, list)
        fields.append(".".join(str(part) for part in location))
    return fields


class TestPayloadModel:
    def test_valid_payload_is_returned_as_json_ready_values(self) -> None:
        task = make_task(resize)

        payload = task.validate_payload(
            {
                "image_id": 7,
                "taken_at": datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
                "ratio": Decimal("1.50"),
                "owner": UUID("12345678-1234-5678-1234-567812345678"),
                "sizes": (1, 2),
                "label": None,
            }
        )

        assert payload == {
            "image_id": 7,
            "taken_at": "2024-05-01T12:30:00Z",
            "ratio": "1.50",
            "owner": "12345678-1234-5678-1234-567812345678",
            "sizes": [1, 2],
            "label": None,
        }
        assert json.loads(json.dumps(payload)) == payload

    def test_lax_values_are_stored_as_their_validated_form(self) -> None:
        task = make_task(resize)

        payload = task.validate_payload(
            {
                "image_id": "7",
                "taken_at": "2024-05-01T12:30:00+00:00",
                "ratio": 2,
                "owner": "12345678123456781234567812345678",
                "sizes": ["1"],
            }
        )

        assert payload["image_id"] == 7
        assert payload["sizes"] == [1]
        assert payload["owner"] == "12345678-1234-5678-1234-567812345678"

    def test_defaults_are_not_stored_and_are_filled_in_when_the_job_runs(self) -> None:
        task = make_task(send_email)

        payload = task.validate_payload({"recipient_email": "a@example.com", "subject": "Hi"})

        assert payload == {"recipient_email": "a@example.com", "subject": "Hi"}
        assert task.arguments(payload) == {
            "recipient_email": "a@example.com",
            "subject": "Hi",
            "body": "",
        }

    def test_arguments_are_typed_from_the_stored_payload(self) -> None:
        task = make_task(resize)
        stored = task.validate_payload(
            {
                "image_id": 1,
                "taken_at": "2024-05-01T12:30:00Z",
                "ratio": "0.5",
                "owner": "12345678-1234-5678-1234-567812345678",
                "sizes": [3],
            }
        )

        arguments = task.arguments(stored)

        assert arguments["taken_at"] == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
        assert arguments["ratio"] == Decimal("0.5")
        assert arguments["owner"] == UUID("12345678-1234-5678-1234-567812345678")
        assert arguments["width"] == 640

    def test_missing_field_is_invalid_and_named(self) -> None:
        task = make_task(send_email)

        with pytest.raises(InvalidPayload) as caught:
            task.validate_payload({"recipient_email": "a@example.com"})

        assert invalid_fields(caught.value) == ["subject"]
        assert "subject" in str(caught.value)
        assert "send_email" in str(caught.value)
        assert caught.value.job_type == "send_email"

    def test_wrong_type_is_invalid_and_named(self) -> None:
        task = make_task(resize)

        with pytest.raises(InvalidPayload) as caught:
            task.validate_payload(
                {
                    "image_id": "seven",
                    "taken_at": "2024-05-01T12:30:00Z",
                    "ratio": "1",
                    "owner": "12345678-1234-5678-1234-567812345678",
                    "sizes": [1, "two"],
                }
            )

        assert invalid_fields(caught.value) == ["image_id", "sizes.1"]
        assert "image_id" in str(caught.value)

    def test_constraint_from_annotated_is_enforced(self) -> None:
        task = make_task(resize)
        valid = {
            "image_id": 1,
            "taken_at": "2024-05-01T12:30:00Z",
            "ratio": "1",
            "owner": "12345678-1234-5678-1234-567812345678",
            "sizes": [],
        }

        with pytest.raises(InvalidPayload) as caught:
            task.validate_payload({**valid, "width": 0})

        assert invalid_fields(caught.value) == ["width"]

    def test_unknown_key_is_invalid_and_named(self) -> None:
        task = make_task(send_email)

        with pytest.raises(InvalidPayload) as caught:
            task.validate_payload({"recipient_email": "a@example.com", "subject": "Hi", "cc": "b"})

        assert invalid_fields(caught.value) == ["cc"]
        assert "cc" in str(caught.value)

    def test_var_keyword_parameter_allows_extra_keys(self) -> None:
        def track(event: str, **properties: Any) -> None:
            return None

        task = make_task(track)

        payload = task.validate_payload({"event": "signup", "plan": "pro", "seats": 3})

        assert payload == {"event": "signup", "plan": "pro", "seats": 3}
        assert task.arguments(payload) == {"event": "signup", "plan": "pro", "seats": 3}

    @pytest.mark.parametrize(
        "payload", [[1, 2], "text", 42, ("a", 1)], ids=["list", "str", "int", "tuple"]
    )
    def test_non_object_payload_is_invalid(self, payload: Any) -> None:
        task = make_task(send_email)

        with pytest.raises(InvalidPayload, match="must be a JSON object"):
            task.validate_payload(payload)

    def test_no_payload_means_an_empty_object(self) -> None:
        def ping() -> str:
            return "pong"

        task = make_task(ping)

        assert task.validate_payload(None) == {}
        assert task.validate_payload({}) == {}
        with pytest.raises(InvalidPayload):
            task.validate_payload({"unexpected": 1})

    def test_unannotated_parameters_accept_any_json_value(self) -> None:
        def loose(value, other=3):
            return value

        task = make_task(loose)

        assert task.validate_payload({"value": {"nested": [1, None]}}) == {
            "value": {"nested": [1, None]}
        }

    def test_positional_only_parameter_is_rejected_at_registration(self) -> None:
        def positional(a: int, /, b: int) -> None:
            return None

        with pytest.raises(ConfigurationError, match="'a'"):
            make_task(positional)

    def test_var_positional_parameter_is_rejected_at_registration(self) -> None:
        def star(*items: int) -> None:
            return None

        with pytest.raises(ConfigurationError, match="'items'"):
            make_task(star)

    @pytest.mark.parametrize("parameter", ["json", "schema", "copy"])
    def test_a_parameter_named_like_a_model_attribute_registers_silently(
        self, parameter: str
    ) -> None:
        namespace: dict[str, Any] = {}
        exec(f"def export({parameter}: str) -> None: pass", namespace)  # noqa: S102

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            task = make_task(namespace["export"])

        assert task.validate_payload({parameter: "x"}) == {parameter: "x"}
        assert task.arguments({parameter: "x"}) == {parameter: "x"}


class TestTaskOptions:
    def test_task_is_still_callable_like_its_function(self) -> None:
        task = make_task(resize)

        assert task(1, datetime.now(UTC), Decimal(1), UUID(int=1), []) is None
        assert task.is_async is False
        assert make_task(send_email).is_async is True

    def test_defaults(self) -> None:
        task = make_task(send_email)

        assert task.name == "send_email"
        assert task.queue == "default"
        assert task.max_attempts == 3
        assert task.timeout is None
        assert task.retry_delay is None
        assert task.priority == 0

    @pytest.mark.parametrize(
        ("option", "value", "named"),
        [
            ("name", "", "task name"),
            ("name", "x" * 201, "task name"),
            ("queue", "", "queue name"),
            ("max_attempts", 0, "max_attempts"),
            ("max_attempts", 1001, "max_attempts"),
            ("max_attempts", 2.5, "max_attempts"),
            ("timeout", 0, "timeout"),
            ("timeout", -1.0, "timeout"),
            ("timeout", float("inf"), "timeout"),
            ("timeout", float("nan"), "timeout"),
            ("priority", 2**31, "priority"),
            ("priority", 1.5, "priority"),
            ("retry_delay", -1, "retry_delay"),
            ("retry_delay", "10", "retry_delay"),
            ("retry_delay", float("nan"), "retry_delay"),
            ("retry_delay", float("inf"), "retry_delay"),
        ],
    )
    def test_bad_option_is_refused_and_named(self, option: str, value: Any, named: str) -> None:
        with pytest.raises(ConfigurationError, match=named):
            make_task(send_email, **{option: value})

    @pytest.mark.parametrize(
        ("option", "value"),
        [
            ("retry_delay", 0),
            ("retry_delay", 2.5),
            ("retry_delay", lambda attempt: attempt * 2.0),
            ("timeout", 0.5),
            ("priority", -(2**31) + 1),
            ("max_attempts", 1000),
        ],
    )
    def test_good_options_are_kept(self, option: str, value: Any) -> None:
        task = make_task(send_email, **{option: value})

        assert getattr(task, option) == value


class TestRegistry:
    def test_registered_task_is_found_by_name(self) -> None:
        registry = TaskRegistry()
        task = make_task(send_email)

        registry.add(task)

        assert registry.get("send_email") is task
        assert "send_email" in registry
        assert len(registry) == 1
        assert list(registry) == [task]

    def test_a_second_task_under_the_same_name_is_refused(self) -> None:
        registry = TaskRegistry()
        registry.add(make_task(send_email))

        async def impostor(recipient_email: str) -> None:
            return None

        with pytest.raises(ConfigurationError, match="send_email"):
            registry.add(make_task(impostor, name="send_email"))
        assert registry.get("send_email").fn is send_email

    def test_registering_the_same_function_again_is_harmless(self) -> None:
        registry = TaskRegistry()
        registry.add(make_task(send_email))

        registry.add(make_task(send_email))

        assert len(registry) == 1

    @pytest.mark.parametrize("job_type", ["nope", "", "send_email ", "SEND_EMAIL"])
    def test_unknown_job_type_raises(self, job_type: str) -> None:
        registry = TaskRegistry()
        registry.add(make_task(send_email))

        with pytest.raises(UnknownJobType) as caught:
            registry.get(job_type)

        assert caught.value.job_type == job_type
        assert job_type not in registry

    def test_registries_do_not_share_tasks(self) -> None:
        first, second = TaskRegistry(), TaskRegistry()

        first.add(make_task(send_email))

        assert "send_email" not in second
        with pytest.raises(UnknownJobType):
            second.get("send_email")


def get_settings() -> dict[str, str]:
    return {"region": "eu"}


class Settings:
    def __init__(self, values: Annotated[dict[str, str], Depends(get_settings)]) -> None:
        self.values = values


def needs_a_request(user_id: int) -> str:
    return str(user_id)


class TestInjectedParameters:
    def test_context_and_dependencies_are_not_payload_fields(self) -> None:
        async def export(
            report_id: int,
            ctx: JobContext,
            settings: Annotated[Settings, Depends()],
            region: str = Depends(get_settings),
        ) -> None:
            return None

        task = make_task(export)

        assert set(task.payload_model.model_fields) == {"p_report_id"}
        assert task.injection is not None
        assert task.injection.names == {"ctx", "settings", "region"}
        assert task.validate_payload({"report_id": 1}) == {"report_id": 1}
        for key in ("ctx", "settings", "region"):
            with pytest.raises(InvalidPayload) as caught:
                task.validate_payload({"report_id": 1, key: {}})
            assert invalid_fields(caught.value) == [key]

    def test_a_task_without_injected_parameters_has_no_injection(self) -> None:
        assert make_task(send_email).injection is None

    async def test_dependencies_resolve_by_kind_and_depends_without_a_callable_builds_the_class(
        self,
    ) -> None:
        cleaned: list[str] = []

        def sync_gen(ctx: JobContext) -> Iterator[str]:
            yield f"sync gen of {ctx.job_id}"
            cleaned.append("sync gen")

        async def async_gen() -> AsyncIterator[str]:
            yield "async gen"
            cleaned.append("async gen")

        class Callable_:
            async def __call__(self, ctx: JobContext) -> int:
                return ctx.attempt

        async def job(
            settings: Annotated[Settings, Depends()],
            a: Annotated[str, Depends(sync_gen)],
            b: Annotated[str, Depends(async_gen)],
            c: Annotated[int, Depends(Callable_())],
            ctx: JobContext,
        ) -> None:
            return None

        task = make_task(job)
        assert task.injection is not None
        assert [d.kind for d in task.injection.dependencies] == [
            "function",
            "generator",
            "async_generator",
            "coroutine",
        ]
        ctx = JobContext(job_id="j1", job_type="job", queue="default", attempt=3)
        async with AsyncExitStack() as stack:
            values = await task.injection.resolve(ctx, stack)
            assert cleaned == []

        assert cleaned == ["async gen", "sync gen"]
        assert isinstance(values.pop("settings"), Settings)
        assert values == {"a": "sync gen of j1", "b": "async gen", "c": 3, "ctx": ctx}

    def test_a_dependency_parameter_neither_depends_nor_context_is_refused_by_name(
        self,
    ) -> None:
        def loader(user_id: Annotated[str, Depends(needs_a_request)]) -> str:
            return user_id

        async def job(data: Annotated[str, Depends(loader)]) -> None:
            return None

        with pytest.raises(ConfigurationError) as caught:
            make_task(job)

        assert "'user_id' of dependency 'needs_a_request'" in str(caught.value)
        assert "neither Depends(...) nor JobContext" in str(caught.value)

    def test_a_dependency_on_itself_is_refused(self) -> None:
        def cycle(value: int = 0) -> int:
            return value

        cycle.__defaults__ = (Depends(cycle),)

        async def job(value: Annotated[int, Depends(cycle)]) -> None:
            return None

        with pytest.raises(ConfigurationError, match="depends on itself"):
            make_task(job)

    def test_max_concurrency_of_a_dependency_is_refused(self) -> None:
        async def job(
            settings: Annotated[dict[str, str], Depends(get_settings, max_concurrency=2)],
        ) -> None:
            return None

        with pytest.raises(ConfigurationError, match="max_concurrency"):
            make_task(job)

    def test_a_task_with_only_a_context_does_not_import_fastapi(self) -> None:
        # A standalone worker whose tasks take no Depends stays without FastAPI.
        code = (
            "import sys\n"
            "from fastapi_equeue.tasks import Task\n"
            "from fastapi_equeue import JobContext\n"
            "def job(n: int, ctx: JobContext) -> None: ...\n"
            "task = Task(fn=job, name='job')\n"
            "assert task.injection is not None and task.injection.names == {'ctx'}\n"
            "print('fastapi' in sys.modules)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == "False"


def test_payload_size_counts_utf8_bytes_of_compact_json() -> None:
    assert payload_size({}) == 2
    assert payload_size({"a": 1}) == len('{"a":1}')
    assert payload_size({"name": "żółw"}) == len('{"name":"żółw"}'.encode())
    assert payload_size({"name": "żółw"}) > len('{"name":"żółw"}')
