-- Chains (jobs that wait for others to complete) and the progress of long jobs.

-- The latest progress an attempt reported: {"fraction", "message", "at"}.
ALTER TABLE equeue_jobs ADD COLUMN progress TEXT;
-- The jobs this one waits for (ids, as given, a JSON array); NULL when it waits for none.
ALTER TABLE equeue_jobs ADD COLUMN depends_on TEXT;
-- Waiting for a dependency to complete: not claimable, whatever its status says.
ALTER TABLE equeue_jobs ADD COLUMN blocked INTEGER NOT NULL DEFAULT 0;
-- Some job depends on this one: its end must release (or cancel) them.
ALTER TABLE equeue_jobs ADD COLUMN has_dependents INTEGER NOT NULL DEFAULT 0;
-- It ended, and its dependents are not yet released (see job_release).
ALTER TABLE equeue_jobs ADD COLUMN release_pending INTEGER NOT NULL DEFAULT 0;

-- One row per edge: job_id waits for depends_on. Pruning a job drops its edges (the
-- connections turn foreign keys on).
CREATE TABLE equeue_dependencies (
    depends_on TEXT NOT NULL REFERENCES equeue_jobs (id) ON DELETE CASCADE,
    job_id     TEXT NOT NULL REFERENCES equeue_jobs (id) ON DELETE CASCADE,
    PRIMARY KEY (depends_on, job_id)
) WITHOUT ROWID;
CREATE INDEX equeue_dependencies_job_idx ON equeue_dependencies (job_id);

-- The claim's index leaves out blocked jobs (SQLite cannot rename an index: it is dropped and
-- made again under its name).
DROP INDEX equeue_jobs_queue_claimable_idx;
CREATE INDEX equeue_jobs_queue_claimable_idx
    ON equeue_jobs (queue, priority DESC, scheduled_at, id)
    WHERE status IN ('queued', 'retrying') AND blocked = 0;

CREATE INDEX equeue_jobs_release_pending_idx ON equeue_jobs (id) WHERE release_pending = 1;
