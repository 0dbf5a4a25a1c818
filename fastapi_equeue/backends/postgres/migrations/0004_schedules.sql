-- Periodic jobs: one row per schedule, by name, and how far it has run. A tick's job is
-- inserted by the one process whose UPDATE moves last_tick past it (see schedule_claim), in the
-- same transaction: once per tick, however many processes run a scheduler.

CREATE TABLE equeue_schedules (
    name        text        PRIMARY KEY,
    -- The definition as the worker that started last declared it.
    cron        text        NOT NULL,
    timezone    text        NOT NULL,
    job_type    text        NOT NULL,
    payload     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- No tick at or before this one is enqueued any more: the last one enqueued, or, for a
    -- schedule registered (or given another cron) since, its latest tick then.
    last_tick   timestamptz NOT NULL,
    -- The tick and the job of the last enqueue (NULL before the first). Not a foreign key:
    -- retention deletes the job in time.
    last_run_at timestamptz,
    last_job_id uuid,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
