"""The public surface: exactly what ``__all__`` lists, sorted, including the contract's names."""

import inspect
import subprocess
import sys

import fastapi_equeue as equeue

CONTRACT = {
    "EQueue",
    "QueueClient",
    "Job",
    "JobStatus",
    "Page",
    "router",
    "get_queue",
    "JobContext",  # the contract's later additions: Progress, Dependencies in tasks
}


def test_all_is_sorted_and_complete() -> None:
    # Submodules are importable as attributes once imported anywhere; they are not re-exports.
    public = {
        name
        for name in dir(equeue)
        if not name.startswith("_") and not inspect.ismodule(getattr(equeue, name))
    }
    assert equeue.__all__ == sorted(equeue.__all__)
    assert set(equeue.__all__) - {"__version__"} == public


def test_contract_names_are_exported() -> None:
    assert set(equeue.__all__) >= CONTRACT


def test_periodic_jobs_are_part_of_the_surface() -> None:
    assert {"Schedule", "ScheduleInfo"} <= set(equeue.__all__)
    assert list(inspect.signature(equeue.EQueue.periodic).parameters) == [
        "self",
        "cron",
        "job_type",
        "payload",
        "timezone",
        "name",
    ]
    assert inspect.iscoroutinefunction(equeue.QueueClient.schedules)
    assert set(equeue.ScheduleInfo.model_fields) == {
        "name",
        "cron",
        "timezone",
        "job_type",
        "next_run_at",
        "last_run_at",
        "last_job_id",
    }


def test_job_status_values_match_the_contract() -> None:
    assert [s.value for s in equeue.JobStatus] == [
        "queued",
        "processing",
        "retrying",
        "completed",
        "failed",
        "cancelled",
    ]
    assert isinstance(equeue.JobStatus.QUEUED, str)


def test_router_mounts_under_jobs() -> None:
    assert equeue.router.prefix == "/jobs"


def test_a_standalone_worker_does_not_import_fastapi() -> None:
    # The web side loads on first use, which keeps a worker process's memory down.
    code = "import sys, fastapi_equeue.worker.cli; print('fastapi' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
