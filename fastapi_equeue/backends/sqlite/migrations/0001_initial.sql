-- The jobs table, the workers table and the indexes the claim and the look-ups use.
-- Timestamps are whole microseconds since the Unix epoch (UTC): exact integers, so that a value
-- read back and bound again (a pagination cursor, say) compares equal to the stored one.

CREATE TABLE equeue_jobs (
    id               TEXT    PRIMARY KEY,
    job_type         TEXT    NOT NULL,
    queue            TEXT    NOT NULL,
    status           TEXT    NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'processing', 'retrying', 'completed', 'failed', 'cancelled')),
    payload          TEXT    NOT NULL DEFAULT '{}',
    priority         INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL CHECK (max_attempts >= 1),
    created_at       INTEGER NOT NULL,
    scheduled_at     INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    result           TEXT,
    last_error       TEXT,
    errors           TEXT    NOT NULL DEFAULT '[]',
    idempotency_key  TEXT,
    worker_id        TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);

-- The claim reads only claimable rows, in the claim's order.
CREATE INDEX equeue_jobs_claimable_idx
    ON equeue_jobs (priority DESC, scheduled_at, id)
    WHERE status IN ('queued', 'retrying');

CREATE INDEX equeue_jobs_processing_idx
    ON equeue_jobs (worker_id)
    WHERE status = 'processing';

CREATE INDEX equeue_jobs_created_idx ON equeue_jobs (created_at DESC, id DESC);
CREATE INDEX equeue_jobs_status_created_idx ON equeue_jobs (status, created_at DESC, id DESC);

CREATE UNIQUE INDEX equeue_jobs_idempotency_key_idx
    ON equeue_jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE equeue_workers (
    id           TEXT    PRIMARY KEY,
    hostname     TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    queues       TEXT,
    concurrency  INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    last_beat_at INTEGER NOT NULL
);
