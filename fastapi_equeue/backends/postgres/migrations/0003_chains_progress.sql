-- Chains (jobs that wait for others to complete) and the progress of long jobs.

-- The latest progress an attempt reported: {"fraction", "message", "at"}.
ALTER TABLE equeue_jobs ADD COLUMN progress jsonb;
-- The jobs this one waits for (ids, as given); NULL when it waits for none.
ALTER TABLE equeue_jobs ADD COLUMN depends_on jsonb;
-- Waiting for a dependency to complete: not claimable, whatever its status says.
ALTER TABLE equeue_jobs ADD COLUMN blocked boolean NOT NULL DEFAULT false;
-- Some job depends on this one: its end must release (or cancel) them.
ALTER TABLE equeue_jobs ADD COLUMN has_dependents boolean NOT NULL DEFAULT false;
-- It ended, and its dependents are not yet released: set in the statement that ends the job,
-- cleared by job_release, so a crash in between leaves work that any worker finds.
ALTER TABLE equeue_jobs ADD COLUMN release_pending boolean NOT NULL DEFAULT false;

-- One row per edge: job_id waits for depends_on. Pruning a job drops its edges.
CREATE TABLE equeue_dependencies (
    depends_on uuid NOT NULL REFERENCES equeue_jobs (id) ON DELETE CASCADE,
    job_id     uuid NOT NULL REFERENCES equeue_jobs (id) ON DELETE CASCADE,
    PRIMARY KEY (depends_on, job_id)
);
CREATE INDEX equeue_dependencies_job_idx ON equeue_dependencies (job_id);

-- The claim's index leaves out blocked jobs: however many wait on dependencies, a claim and
-- the workers' skip scan read only rows that can run.
CREATE INDEX equeue_jobs_queue_ready_idx
    ON equeue_jobs (queue, priority DESC, scheduled_at, id)
    WHERE status IN ('queued', 'retrying') AND NOT blocked;
DROP INDEX equeue_jobs_queue_claimable_idx;
ALTER INDEX equeue_jobs_queue_ready_idx RENAME TO equeue_jobs_queue_claimable_idx;

-- Ended jobs whose dependents still wait for their release.
CREATE INDEX equeue_jobs_release_pending_idx ON equeue_jobs (id) WHERE release_pending;
