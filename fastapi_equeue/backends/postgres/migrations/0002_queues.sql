-- Queues as data (their settings, which every claim obeys), and the indexes that claiming per
-- queue, queue limits and retention read.

CREATE TABLE equeue_queues (
    name          text        PRIMARY KEY,
    paused        boolean     NOT NULL DEFAULT false,
    concurrency   integer     CHECK (concurrency >= 1),
    rate_limit    integer     CHECK (rate_limit >= 1),
    rate_period   integer     CHECK (rate_period >= 1),
    -- Jobs claimed while the queue had a limit: concurrent claimers compare it (see job_claim).
    claimed_total bigint      NOT NULL DEFAULT 0,
    -- Starts inside the rate window, oldest first: [[epoch seconds, jobs started], ...].
    starts        jsonb       NOT NULL DEFAULT '[]'::jsonb,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((rate_limit IS NULL) = (rate_period IS NULL))
);

-- A claim reads one queue's claimable rows in its order, and the workers find the queues that
-- have any by a skip scan of the same index. It stays small however many finished rows the
-- table holds.
CREATE INDEX equeue_jobs_queue_claimable_idx
    ON equeue_jobs (queue, priority DESC, scheduled_at, id)
    WHERE status IN ('queued', 'retrying');
DROP INDEX equeue_jobs_claimable_idx;

-- A concurrency limit counts a queue's running rows; the rescuer and the cancel check read
-- running rows by worker.
CREATE INDEX equeue_jobs_queue_processing_idx
    ON equeue_jobs (queue, worker_id)
    WHERE status = 'processing';
DROP INDEX equeue_jobs_processing_idx;

-- Retention deletes finished rows by age, status by status.
CREATE INDEX equeue_jobs_finished_idx
    ON equeue_jobs (status, finished_at)
    WHERE status IN ('completed', 'failed', 'cancelled');
