"""Job ids (UUIDv7, sortable by time) and the opaque id and cursor codecs."""

import base64
import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from fastapi_equeue import jobs
from fastapi_equeue.jobs import JobStatus, decode_cursor, encode_cursor, new_job_id, parse_job_id


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class TestNewJobId:
    def test_is_a_canonical_uuid_version_7(self) -> None:
        job_id = new_job_id()

        value = uuid.UUID(job_id)
        assert value.version == 7
        assert value.variant == uuid.RFC_4122
        assert str(value) == job_id

    def test_carries_its_creation_time_in_milliseconds(self) -> None:
        before = time.time_ns() // 1_000_000
        job_id = new_job_id()
        after = time.time_ns() // 1_000_000

        assert before <= uuid.UUID(job_id).int >> 80 <= after

    def test_ids_sort_by_creation_time(self, monkeypatch: pytest.MonkeyPatch) -> None:
        start_ms = 1_700_000_000_000
        ticks = iter(range(start_ms, start_ms + 200))
        monkeypatch.setattr(jobs, "time", SimpleNamespace(time_ns=lambda: next(ticks) * 1_000_000))
        created = [new_job_id() for _ in range(200)]

        shuffled = random.sample(created, len(created))

        assert sorted(shuffled) == created
        assert sorted(shuffled, key=uuid.UUID) == created

    def test_ids_are_unique(self) -> None:
        ids = [new_job_id() for _ in range(5000)]

        assert len(set(ids)) == len(ids)


class TestParseJobId:
    def test_canonical_id_is_returned_unchanged(self) -> None:
        job_id = new_job_id()

        assert parse_job_id(job_id) == job_id

    @pytest.mark.parametrize("form", ["{%s}", "urn:uuid:%s"])
    def test_other_uuid_spellings_become_canonical(self, form: str) -> None:
        job_id = new_job_id()

        assert parse_job_id(form % job_id.upper()) == job_id
        assert parse_job_id(job_id.replace("-", "")) == job_id

    @pytest.mark.parametrize(
        "junk",
        [
            "",
            "abc",
            "12345",
            "not-a-uuid-at-all-not-a-uuid-at-all!",
            "01a20f0b-9ad9-7b58-9d27-46ca37aec75",  # one digit short
            "01a20f0b-9ad9-7b58-9d27-46ca37aec757x",
            "g1a20f0b-9ad9-7b58-9d27-46ca37aec757",
            "../../etc/passwd",
            "' OR 1=1 --",
            "0" * 65,
            "1" * 10_000,
            None,
            42,
            b"01a20f0b-9ad9-7b58-9d27-46ca37aec757",
        ],
    )
    def test_junk_is_rejected(self, junk: Any) -> None:
        assert parse_job_id(junk) is None


class TestCursor:
    @pytest.mark.parametrize(
        "created_at",
        [
            datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC),
            datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC),
            datetime(2024, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=2))),
        ],
    )
    def test_round_trip(self, created_at: datetime) -> None:
        job_id = new_job_id()

        cursor = encode_cursor(created_at, job_id)

        assert decode_cursor(cursor) == (created_at, job_id)

    def test_cursor_is_opaque_url_safe_text(self) -> None:
        cursor = encode_cursor(datetime.now(UTC), new_job_id())

        assert cursor.isascii()
        assert not set(cursor) & set("+/= ")

    @pytest.mark.parametrize(
        "junk",
        [
            "",
            "!!!",
            "éé",
            "a" * 10_000,
            _b64(b"\xff\xfe\xfd"),
            _b64(b"not json"),
            _b64(b"42"),
            _b64(b"null"),
            _b64(b'["2024-05-01T12:30:00+00:00"]'),
            _b64(b'["2024-05-01T12:30:00+00:00", "x", "y"]'),
            _b64(b'{"a": 1, "b": 2}'),
            _b64(b'[1, "01a20f0b-9ad9-7b58-9d27-46ca37aec757"]'),
            _b64(b'["yesterday", "01a20f0b-9ad9-7b58-9d27-46ca37aec757"]'),
            _b64(b'["2024-05-01T12:30:00+00:00", "not-an-id"]'),
            _b64(b'["2024-05-01T12:30:00+00:00", 5]'),
            # A naive time could not be compared with the stored, aware ones.
            _b64(b'["2024-05-01T12:30:00", "01a20f0b-9ad9-7b58-9d27-46ca37aec757"]'),
            _b64(b"[" * 300),
            None,
            7,
        ],
    )
    def test_junk_is_rejected(self, junk: Any) -> None:
        assert decode_cursor(junk) is None

    def test_a_cursor_with_a_truncated_id_is_rejected(self) -> None:
        created_at, job_id = datetime.now(UTC), new_job_id()
        raw = json.dumps([created_at.isoformat(), job_id[:-1]]).encode()

        assert decode_cursor(_b64(raw)) is None


def test_final_statuses() -> None:
    final = {status for status in JobStatus if status.is_final}

    assert final == {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
