"""Chains in the database: linking new jobs to the jobs they wait for, and releasing them.

Internal: not covered by semver. Both dialects run these steps with the statements of the same
names, inside one transaction (the backend's own, or a host's): whatever runs them passes a
``Run`` that executes a named statement there.

How a dependent never waits forever, whatever runs concurrently:
- New jobs first lock the jobs they depend on (``job_dependencies_lock``, which marks them
  ``has_dependents``) and read their newest status. A dependency that ends while the new jobs'
  transaction is open waits for its commit, and its ending write sees the mark: it sets
  ``release_pending``.
- Whatever ends a job with dependents (an outcome, a cancel, a rescue) releases them afterwards
  in a statement of its own (``job_release``), whose snapshot holds every dependent committed
  before the end was. ``release_pending`` is cleared in the same transaction, so a process that
  dies in between leaves the flag for any worker's sweep to find.
- A dependent is released once every dependency completed, or cancelled (its error naming the
  dependency) once one failed or was cancelled; then its own dependents are released in turn.
"""

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from fastapi_equeue.backend import JobInsertParams, JobRow
from fastapi_equeue.backends._database import Row
from fastapi_equeue.errors import UnknownDependency
from fastapi_equeue.jobs import JobStatus

Run = Callable[[str, dict[str, Any]], Awaitable[Sequence[Row]]]
"""Runs a named statement with its parameters in the transaction at hand."""
Insert = Callable[[], Awaitable[list[JobRow]]]
"""Inserts jobs in the transaction at hand; the rows it inserted."""
Decode = Callable[[Row], JobRow]

_ENDED_BADLY = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})


async def insert_linked(
    params: Sequence[JobInsertParams], run: Run, insert: Insert, decode: Decode
) -> tuple[list[JobRow], list[Row]]:
    """Insert jobs, some of which wait for others (of this batch or already stored).

    Returns the inserted rows as they now are, and the dependents this moved (cancelled at
    once: a dependency had already failed or been cancelled), for the caller to announce.

    Raises:
        UnknownDependency: a dependency is neither stored nor in the batch; nothing was
            written (the check runs before the insert).
    """
    batch = {p.id for p in params}
    outside = sorted({d for p in params for d in p.depends_on if d not in batch})
    statuses = await _lock(run, outside)
    missing = [d for d in outside if d not in statuses]
    if missing:
        raise UnknownDependency(missing)
    rows = await insert()
    inserted = {row.id: row for row in rows}
    # A job of the batch whose idempotency key was taken is the job holding it: its dependents
    # wait for that one.
    alias = await _aliases([p for p in params if p.id not in inserted], run, decode)
    links = [
        _Link(p.id, [alias.get(d, d) for d in p.depends_on])
        for p in params
        if p.id in inserted and p.depends_on
    ]
    inside = sorted({d for link in links for d in link.depends_on if d not in statuses})
    statuses.update(await _lock(run, inside))
    for link in links:
        link.blocked = any(statuses[d] is not JobStatus.COMPLETED for d in link.depends_on)
    if not links:
        return rows, []
    encoded = json.dumps([asdict(link) for link in links])
    await run("job_dependencies_edges", {"links": encoded})
    await run("job_dependencies_link", {"links": encoded})
    linked = {link.id: link for link in links}
    rows = [
        replace(row, depends_on=linked[row.id].depends_on, blocked=linked[row.id].blocked)
        if row.id in linked
        else row
        for row in rows
    ]
    ended = sorted({d for link in links for d in link.depends_on if statuses[d] in _ENDED_BADLY})
    moved = await release(run, ended) if ended else []
    changed = {str(r["id"]) for r in moved} & set(inserted)
    if changed:
        fresh: dict[str, JobRow] = {}
        for job_id in changed:
            fresh.update((job_id, decode(r)) for r in await run("job_get", {"id": job_id}))
        rows = [fresh.get(row.id, row) for row in rows]
    return rows, moved


async def release(run: Run, ended: Sequence[str]) -> list[Row]:
    """Release the dependents of ``ended`` jobs, and those of every dependent this cancels, in
    turn; the dependents moved (each with ``id``, ``status`` and ``queue``)."""
    moved: list[Row] = []
    ids = list(ended)
    while ids:
        rows = await run("job_release", {"ids": json.dumps(ids)})
        await run("job_release_done", {"ids": json.dumps(ids)})
        moved.extend(rows)
        ids = [str(r["id"]) for r in rows if r["release_pending"]]
    return moved


@dataclass(slots=True)
class _Link:
    """A new job, what it waits for, and whether any of that has yet to complete."""

    id: str
    depends_on: list[str]
    blocked: bool = True


async def _lock(run: Run, ids: Sequence[str]) -> dict[str, JobStatus]:
    if not ids:
        return {}
    rows = await run("job_dependencies_lock", {"ids": json.dumps(list(ids))})
    return {str(r["id"]): JobStatus(r["status"]) for r in rows}


async def _aliases(
    skipped: Sequence[JobInsertParams], run: Run, decode: Decode
) -> Mapping[str, str]:
    keys = [p.idempotency_key for p in skipped if p.idempotency_key]
    if not keys:
        return {}
    holders = {
        row.idempotency_key: row.id
        for row in map(decode, await run("job_get_by_keys", {"keys": json.dumps(keys)}))
    }
    return {p.id: holders[p.idempotency_key] for p in skipped if p.idempotency_key in holders}
