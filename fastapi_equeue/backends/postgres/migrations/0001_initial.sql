-- The jobs table, the workers table and the indexes the claim and the look-ups use.

CREATE TABLE equeue_jobs (
    id               uuid PRIMARY KEY,
    job_type         text        NOT NULL,
    queue            text        NOT NULL,
    status           text        NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'processing', 'retrying', 'completed', 'failed', 'cancelled')),
    payload          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    priority         integer     NOT NULL DEFAULT 0,
    attempts         integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL CHECK (max_attempts >= 1),
    created_at       timestamptz NOT NULL DEFAULT now(),
    scheduled_at     timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    result           jsonb,
    last_error       text,
    errors           jsonb       NOT NULL DEFAULT '[]'::jsonb,
    idempotency_key  text,
    worker_id        uuid,
    cancel_requested boolean     NOT NULL DEFAULT false
);

-- The claim reads only claimable rows: a partial index keeps it small and flat however many
-- finished rows the table holds, and its order is the claim's ORDER BY.
CREATE INDEX equeue_jobs_claimable_idx
    ON equeue_jobs (priority DESC, scheduled_at, id)
    WHERE status IN ('queued', 'retrying');

-- The rescuer and the cancel check look only at running rows.
CREATE INDEX equeue_jobs_processing_idx
    ON equeue_jobs (worker_id)
    WHERE status = 'processing';

-- Newest-first listing with keyset pagination, optionally filtered by status.
CREATE INDEX equeue_jobs_created_idx ON equeue_jobs (created_at DESC, id DESC);
CREATE INDEX equeue_jobs_status_created_idx ON equeue_jobs (status, created_at DESC, id DESC);

-- One job per idempotency key, whatever its state.
CREATE UNIQUE INDEX equeue_jobs_idempotency_key_idx
    ON equeue_jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE equeue_workers (
    id           uuid PRIMARY KEY,
    hostname     text        NOT NULL,
    pid          integer     NOT NULL,
    queues       jsonb,
    concurrency  integer     NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    last_beat_at timestamptz NOT NULL DEFAULT now()
);
