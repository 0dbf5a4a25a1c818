-- Queues as data (their settings, which every claim obeys), and the indexes that claiming per
-- queue, queue limits and retention read.

CREATE TABLE equeue_queues (
    name          TEXT    PRIMARY KEY,
    paused        INTEGER NOT NULL DEFAULT 0,
    concurrency   INTEGER CHECK (concurrency >= 1),
    rate_limit    INTEGER CHECK (rate_limit >= 1),
    rate_period   INTEGER CHECK (rate_period >= 1),
    claimed_total INTEGER NOT NULL DEFAULT 0,
    -- Starts inside the rate window, oldest first: [[microseconds, jobs started], ...].
    starts        TEXT    NOT NULL DEFAULT '[]',
    updated_at    INTEGER,
    CHECK ((rate_limit IS NULL) = (rate_period IS NULL))
);

CREATE INDEX equeue_jobs_queue_claimable_idx
    ON equeue_jobs (queue, priority DESC, scheduled_at, id)
    WHERE status IN ('queued', 'retrying');
DROP INDEX equeue_jobs_claimable_idx;

CREATE INDEX equeue_jobs_queue_processing_idx
    ON equeue_jobs (queue, worker_id)
    WHERE status = 'processing';
DROP INDEX equeue_jobs_processing_idx;

CREATE INDEX equeue_jobs_finished_idx
    ON equeue_jobs (status, finished_at)
    WHERE status IN ('completed', 'failed', 'cancelled');
