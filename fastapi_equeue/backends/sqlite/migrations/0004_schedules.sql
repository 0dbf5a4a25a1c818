-- Periodic jobs: one row per schedule, by name, and how far it has run. A tick's job is
-- inserted by the one process whose UPDATE moves last_tick past it (see schedule_claim), in the
-- same transaction: once per tick, however many processes run a scheduler.

CREATE TABLE equeue_schedules (
    name        TEXT    PRIMARY KEY,
    -- The definition as the worker that started last declared it.
    cron        TEXT    NOT NULL,
    timezone    TEXT    NOT NULL,
    job_type    TEXT    NOT NULL,
    payload     TEXT    NOT NULL DEFAULT '{}',
    -- No tick at or before this one is enqueued any more: the last one enqueued, or, for a
    -- schedule registered (or given another cron) since, its latest tick then.
    last_tick   INTEGER NOT NULL,
    -- The tick and the job of the last enqueue (NULL before the first). Not a foreign key:
    -- retention deletes the job in time.
    last_run_at INTEGER,
    last_job_id TEXT,
    updated_at  INTEGER NOT NULL
);
