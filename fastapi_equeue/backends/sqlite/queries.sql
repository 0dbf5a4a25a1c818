-- Every runtime statement of the SQLite backend: the same names as postgres/queries.sql.
-- Format: "-- name: <query>", a one-line description, then the statement.
-- Times are microseconds since the epoch, :now from the queue's clock, durations (:stalled_after,
-- delays) in microseconds too; JSON is text.
-- Every transaction of this backend starts with BEGIN IMMEDIATE (see backend.py): it takes the
-- database's write lock up front, so a claim cannot read rows that another writer then changes,
-- and writers queue on busy_timeout instead of failing with "database is locked" mid-transaction.

-- name: change_marker
-- What changes when jobs or queues change, in any process, read from small indexes only: the
-- jobs waiting and running (counted on the claim's and the running jobs' partial indexes, which
-- INDEXED BY holds the planner to), the newest job, the latest end per final status (each with
-- the retention index's own condition, which SQLite needs to see to use that partial index),
-- and the latest settings change. Worker heartbeats, which write every few seconds, change none.
SELECT (SELECT count(*) FROM equeue_jobs INDEXED BY equeue_jobs_queue_claimable_idx
        WHERE status IN ('queued', 'retrying') AND blocked = 0) AS waiting,
       (SELECT count(*) FROM equeue_jobs INDEXED BY equeue_jobs_queue_processing_idx
        WHERE status = 'processing') AS running,
       (SELECT max(created_at) FROM equeue_jobs) AS created,
       (SELECT max(finished_at) FROM equeue_jobs
        WHERE status = 'completed' AND status IN ('completed', 'failed', 'cancelled')) AS completed,
       (SELECT max(finished_at) FROM equeue_jobs
        WHERE status = 'failed' AND status IN ('completed', 'failed', 'cancelled')) AS failed,
       (SELECT max(finished_at) FROM equeue_jobs
        WHERE status = 'cancelled' AND status IN ('completed', 'failed', 'cancelled')) AS cancelled,
       (SELECT max(updated_at) FROM equeue_queues) AS settings;

-- name: job_cancel
-- Cancel a waiting job at once; flag a running one for its worker.
UPDATE equeue_jobs
SET status = CASE WHEN status = 'processing' THEN status ELSE 'cancelled' END,
    cancel_requested = (status = 'processing'),
    finished_at = CASE WHEN status = 'processing' THEN NULL ELSE :now END,
    release_pending = has_dependents AND status <> 'processing'
WHERE id = :id AND status IN ('queued', 'retrying', 'processing')
RETURNING *;

-- name: job_claim
-- Take up to :limit due jobs of :queue for one worker, highest priority first. Unless :limited,
-- :queue is one without settings, and the claim takes none if it has some after all (paused,
-- or a limit). A :limited claim runs in the transaction of queue_room, which found :limit:
-- BEGIN IMMEDIATE holds the database's one write lock from there to the commit, so no other
-- claimer runs in between (SQLite has no row locks).
-- INDEXED BY keeps the planner on the claim's index (without statistics it prefers another and
-- sorts every queued row, per claim). A worker declared lost (its row deleted) claims nothing
-- until it registers again.
UPDATE equeue_jobs
SET status = 'processing', attempts = attempts + 1, started_at = :now, worker_id = :worker_id
WHERE id IN (
    SELECT id
    FROM equeue_jobs INDEXED BY equeue_jobs_queue_claimable_idx
    WHERE queue = :queue AND status IN ('queued', 'retrying') AND blocked = 0
      AND scheduled_at <= :now
      AND EXISTS (SELECT 1 FROM equeue_workers WHERE id = :worker_id)
      AND (:limited OR NOT EXISTS (
          SELECT 1 FROM equeue_queues AS q
          WHERE q.name = :queue
            AND (q.paused OR q.concurrency IS NOT NULL OR q.rate_limit IS NOT NULL)))
    ORDER BY priority DESC, scheduled_at, id
    LIMIT :limit)
RETURNING *;

-- name: job_complete_many
-- Write a batch of attempt outcomes (a JSON array), fenced on (attempt, worker, processing) so a
-- late, duplicate or zombie write is a no-op. "queued" puts an interrupted job back uncounted.
-- A cancel requested while the attempt was ending wins over a retry or a put-back.
UPDATE equeue_jobs
SET status = CASE WHEN equeue_jobs.cancel_requested AND o.status IN ('retrying', 'queued')
                  THEN 'cancelled' ELSE o.status END,
    attempts = CASE WHEN o.status = 'queued' AND NOT equeue_jobs.cancel_requested
                    THEN equeue_jobs.attempts - 1 ELSE equeue_jobs.attempts END,
    result = CASE WHEN o.status = 'completed' THEN o.result ELSE equeue_jobs.result END,
    errors = CASE WHEN o.error IS NULL THEN equeue_jobs.errors
                  ELSE json_insert(equeue_jobs.errors, '$[#]', json(o.error)) END,
    last_error = CASE WHEN o.error IS NULL THEN equeue_jobs.last_error
                      ELSE json_extract(o.error, '$.error') END,
    scheduled_at = CASE WHEN o.status = 'retrying' AND NOT equeue_jobs.cancel_requested
                        THEN :now + o.retry_delay ELSE equeue_jobs.scheduled_at END,
    started_at = CASE WHEN o.status = 'queued' AND NOT equeue_jobs.cancel_requested
                      THEN NULL ELSE equeue_jobs.started_at END,
    finished_at = CASE WHEN o.status IN ('completed', 'failed', 'cancelled')
                            OR equeue_jobs.cancel_requested THEN :now END,
    worker_id = NULL,
    cancel_requested = 0,
    release_pending = equeue_jobs.has_dependents
                      AND (o.status IN ('completed', 'failed', 'cancelled')
                           OR equeue_jobs.cancel_requested)
FROM (
    SELECT json_extract(value, '$.id') AS id,
           json_extract(value, '$.attempt') AS attempt,
           json_extract(value, '$.worker_id') AS worker_id,
           json_extract(value, '$.status') AS status,
           json_extract(value, '$.result') AS result,
           json_extract(value, '$.error') AS error,
           json_extract(value, '$.retry_delay') AS retry_delay
    FROM json_each(:rows)
) AS o
WHERE equeue_jobs.id = o.id AND equeue_jobs.attempts = o.attempt
  AND equeue_jobs.worker_id = o.worker_id AND equeue_jobs.status = 'processing'
RETURNING equeue_jobs.id, equeue_jobs.status, equeue_jobs.queue, equeue_jobs.release_pending;

-- name: job_count
-- How many jobs the filters match, counting no further than :cap (a bulk action's preview). As in
-- job_list, each way of reading is a branch of its own: by status on the status index, else on
-- the whole table.
SELECT count(*) AS count
FROM (
    SELECT 1
    FROM (SELECT 1 FROM equeue_jobs
          WHERE :status IS NULL
            AND (:job_type IS NULL OR job_type = :job_type)
            AND (:queue IS NULL OR queue = :queue)
          LIMIT :cap)
    UNION ALL
    SELECT 1
    FROM (SELECT 1 FROM equeue_jobs
          WHERE status = :status
            AND (:job_type IS NULL OR job_type = :job_type)
            AND (:queue IS NULL OR queue = :queue)
          LIMIT :cap)
);

-- name: job_dependencies_edges
-- One edge per dependency of new jobs (a JSON array of {"id", "depends_on": [ids], "blocked"}).
INSERT INTO equeue_dependencies (depends_on, job_id)
SELECT DISTINCT d.value, json_extract(l.value, '$.id')
FROM json_each(:links) AS l, json_each(json_extract(l.value, '$.depends_on')) AS d
WHERE true
ON CONFLICT DO NOTHING;

-- name: job_dependencies_link
-- Record what new jobs wait for (a JSON array of {"id", "depends_on": [ids], "blocked"}): the
-- list each job shows, and whether it is blocked (job_dependencies_edges adds the edges).
UPDATE equeue_jobs
SET depends_on = json_extract(l.value, '$.depends_on'),
    blocked = json_extract(l.value, '$.blocked')
FROM json_each(:links) AS l
WHERE equeue_jobs.id = json_extract(l.value, '$.id');

-- name: job_dependencies_lock
-- Mark the jobs that new jobs depend on (a JSON array of ids) as having dependents, and return
-- their statuses (the transaction's write lock keeps them as they are until it commits).
UPDATE equeue_jobs
SET has_dependents = 1
WHERE id IN (SELECT value FROM json_each(:ids))
RETURNING id, status;

-- name: job_get
-- One job by id.
SELECT * FROM equeue_jobs WHERE id = :id;

-- name: job_get_by_keys
-- The jobs holding these idempotency keys (a JSON array).
SELECT * FROM equeue_jobs WHERE idempotency_key IN (SELECT value FROM json_each(:keys));

-- name: job_insert
-- Insert one job (job_insert_many for a batch); a key that exists skips the row.
INSERT INTO equeue_jobs (
    id, job_type, queue, payload, priority, max_attempts, created_at, scheduled_at,
    idempotency_key, trace_context)
VALUES (
    :id, :job_type, :queue, :payload, :priority, :max_attempts, :now,
    coalesce(:run_at, :now + :delay), :idempotency_key, :trace_context)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id, created_at, scheduled_at;

-- name: job_insert_many
-- Insert a batch of jobs (a JSON array) in one statement; a key that exists skips its row.
INSERT INTO equeue_jobs (
    id, job_type, queue, payload, priority, max_attempts, created_at, scheduled_at,
    idempotency_key, trace_context)
SELECT json_extract(value, '$.id'),
       json_extract(value, '$.job_type'),
       json_extract(value, '$.queue'),
       json_extract(value, '$.payload'),
       json_extract(value, '$.priority'),
       json_extract(value, '$.max_attempts'),
       :now,
       coalesce(json_extract(value, '$.run_at'), :now + json_extract(value, '$.delay')),
       json_extract(value, '$.idempotency_key'),
       json_extract(value, '$.trace_context')
FROM json_each(:rows)
-- "WHERE true" resolves the parser's ambiguity between ON CONFLICT and a join's ON clause.
WHERE true
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id, created_at, scheduled_at;

-- name: job_list
-- A page of jobs, newest first, after a keyset position, with optional filters. Each way of
-- reading is a branch of its own, which SQLite skips when its constant condition is false: by
-- status on the status index (a rare status is found at once however many rows the table
-- holds), else on the creation index.
SELECT *
FROM (
    SELECT *
    FROM (SELECT *
          FROM equeue_jobs
          WHERE :status IS NULL
            AND (:job_type IS NULL OR job_type = :job_type)
            AND (:queue IS NULL OR queue = :queue)
            AND (:after_created IS NULL OR (created_at, id) < (:after_created, :after_id))
          ORDER BY created_at DESC, id DESC
          LIMIT :limit)
    UNION ALL
    SELECT *
    FROM (SELECT *
          FROM equeue_jobs
          WHERE status = :status
            AND (:job_type IS NULL OR job_type = :job_type)
            AND (:queue IS NULL OR queue = :queue)
            AND (:after_created IS NULL OR (created_at, id) < (:after_created, :after_id))
          ORDER BY created_at DESC, id DESC
          LIMIT :limit)
)
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: job_processing_by_worker
-- The jobs the database holds as running on one worker (with whether each was asked to cancel).
SELECT *
FROM equeue_jobs
WHERE status = 'processing' AND worker_id = :worker_id;

-- name: job_progress
-- Store an attempt's progress, fenced like its outcome: a stale attempt's word is void.
UPDATE equeue_jobs
SET progress = :progress
WHERE id = :id AND attempts = :attempt AND worker_id = :worker_id AND status = 'processing'
RETURNING id;

-- name: job_prune
-- Delete finished jobs past their retention (:retention microseconds for completed and
-- cancelled ones, :failed_retention for failed ones; NULL keeps them), up to :limit of each
-- status, oldest first, freeing their idempotency keys. Each subquery reads one status's range
-- of equeue_jobs_finished_idx; it repeats the index's own condition, which SQLite needs to see
-- to use a partial index.
DELETE FROM equeue_jobs
WHERE id IN (
    SELECT id FROM (
        SELECT id FROM equeue_jobs INDEXED BY equeue_jobs_finished_idx
        WHERE status IN ('completed', 'failed', 'cancelled')
          AND status = 'completed' AND :retention IS NOT NULL
          AND finished_at < :now - :retention
        ORDER BY finished_at
        LIMIT :limit)
    UNION ALL
    SELECT id FROM (
        SELECT id FROM equeue_jobs INDEXED BY equeue_jobs_finished_idx
        WHERE status IN ('completed', 'failed', 'cancelled')
          AND status = 'cancelled' AND :retention IS NOT NULL
          AND finished_at < :now - :retention
        ORDER BY finished_at
        LIMIT :limit)
    UNION ALL
    SELECT id FROM (
        SELECT id FROM equeue_jobs INDEXED BY equeue_jobs_finished_idx
        WHERE status IN ('completed', 'failed', 'cancelled')
          AND status = 'failed' AND :failed_retention IS NOT NULL
          AND finished_at < :now - :failed_retention
        ORDER BY finished_at
        LIMIT :limit))
RETURNING status;

-- name: job_release
-- Move the blocked dependents of ended jobs (a JSON array of ids): one whose dependencies all
-- completed may run; one with a dependency that failed or was cancelled is cancelled, its
-- error naming that dependency (then it has dependents of its own to release, in turn). A
-- dependent moved already (blocked no more) is left alone.
WITH verdict AS (
    SELECT e.job_id AS id,
           min(p.status = 'completed') AS ready,
           min(CASE WHEN p.status IN ('failed', 'cancelled')
                    THEN 'DependencyFailed: job ' || p.id || ' ended ' || p.status END) AS error
    FROM equeue_dependencies AS e
    JOIN equeue_jobs AS p ON p.id = e.depends_on
    WHERE e.job_id IN (
        SELECT job_id FROM equeue_dependencies
        WHERE depends_on IN (SELECT value FROM json_each(:ids)))
    GROUP BY e.job_id
)
UPDATE equeue_jobs
SET blocked = 0,
    status = CASE WHEN v.error IS NULL THEN equeue_jobs.status ELSE 'cancelled' END,
    finished_at = CASE WHEN v.error IS NULL THEN equeue_jobs.finished_at ELSE :now END,
    last_error = coalesce(v.error, equeue_jobs.last_error),
    errors = CASE WHEN v.error IS NULL THEN equeue_jobs.errors
                  ELSE json_insert(equeue_jobs.errors, '$[#]', json_object(
                      'attempt', equeue_jobs.attempts,
                      'error', v.error,
                      'traceback', NULL,
                      'at', strftime('%Y-%m-%dT%H:%M:%f+00:00', :now / 1000000.0, 'unixepoch')))
             END,
    release_pending = equeue_jobs.has_dependents AND v.error IS NOT NULL
FROM verdict AS v
WHERE equeue_jobs.id = v.id AND equeue_jobs.blocked AND equeue_jobs.status IN ('queued', 'retrying')
  AND (v.ready OR v.error IS NOT NULL)
RETURNING *;

-- name: job_release_done
-- The dependents of these ended jobs (a JSON array of ids) were released.
UPDATE equeue_jobs
SET release_pending = 0
WHERE id IN (SELECT value FROM json_each(:ids)) AND release_pending;

-- name: job_release_pending
-- Ended jobs whose dependents still wait for their release (a worker died in between).
SELECT id FROM equeue_jobs WHERE release_pending = 1 LIMIT :limit;

-- name: job_rescue_stalled
-- Take back running jobs whose worker has been silent for :stalled_after. The lost attempt
-- counts (a WorkerLost error); with none left the job fails; a job being cancelled ends
-- cancelled. The rescuing worker, alive by definition, never rescues its own jobs.
UPDATE equeue_jobs
SET status = CASE WHEN cancel_requested THEN 'cancelled'
                  WHEN attempts >= max_attempts THEN 'failed'
                  ELSE 'queued' END,
    errors = json_insert(errors, '$[#]', json_object(
        'attempt', attempts,
        'error', :error,
        'traceback', NULL,
        'at', strftime('%Y-%m-%dT%H:%M:%f+00:00', :now / 1000000.0, 'unixepoch'),
        'worker_id', worker_id)),
    last_error = :error,
    finished_at = CASE WHEN cancel_requested OR attempts >= max_attempts THEN :now END,
    worker_id = NULL,
    cancel_requested = 0,
    release_pending = has_dependents AND (cancel_requested OR attempts >= max_attempts)
WHERE status = 'processing' AND worker_id <> :worker_id
  AND NOT EXISTS (
      SELECT 1 FROM equeue_workers AS w
      WHERE w.id = equeue_jobs.worker_id AND w.last_beat_at > :now - :stalled_after)
RETURNING *;

-- name: job_retry
-- Queue a failed or cancelled job again, attempts reset, errors kept.
UPDATE equeue_jobs
SET status = 'queued', attempts = 0, scheduled_at = :now, started_at = NULL,
    finished_at = NULL, result = NULL, worker_id = NULL, cancel_requested = 0,
    -- A dependent waits again for those of its dependencies that have not completed.
    blocked = EXISTS (
        SELECT 1 FROM equeue_dependencies AS e
        JOIN equeue_jobs AS p ON p.id = e.depends_on
        WHERE e.job_id = equeue_jobs.id AND p.status <> 'completed')
WHERE id = :id AND status IN ('failed', 'cancelled')
RETURNING *;

-- name: job_throughput
-- Completed and failed jobs per minute (the minute's start, in epoch seconds) since :since, read
-- from the retention index, whose own condition the statement repeats: SQLite uses a partial
-- index only for a query that states it.
SELECT status, (finished_at / 60000000) * 60 AS minute, count(*) AS count
FROM equeue_jobs
WHERE status IN ('completed', 'failed', 'cancelled')
  AND status IN ('completed', 'failed') AND finished_at >= :since
GROUP BY status, minute;

-- name: metrics_snapshot
-- Every queue with jobs that could run or with settings: paused or not, its backlog (queued
-- and retrying jobs not blocked on dependencies), the age in seconds of its oldest due one;
-- and on every row, the workers that beat within stalled_after (one row of NULLs carries that
-- count when there is no queue). Cheap at any table size: the backlog is read from
-- equeue_jobs_queue_claimable_idx alone, whose rows are exactly those jobs (the WHERE is the
-- index's predicate), never from the finished jobs.
WITH backlog AS (
    SELECT queue, count(*) AS backlog,
           min(CASE WHEN scheduled_at <= :now THEN scheduled_at END) AS oldest
    FROM equeue_jobs
    WHERE status IN ('queued', 'retrying') AND blocked = 0
    GROUP BY queue
),
names (name) AS (
    SELECT queue FROM backlog
    UNION
    SELECT name FROM equeue_queues
),
queues AS (
    SELECT n.name, coalesce(q.paused, 0) AS paused, coalesce(b.backlog, 0) AS backlog,
           (:now - b.oldest) / 1000000.0 AS oldest_age
    FROM names AS n
    LEFT JOIN backlog AS b ON b.queue = n.name
    LEFT JOIN equeue_queues AS q ON q.name = n.name
)
SELECT s.name AS queue, s.paused, s.backlog, s.oldest_age, w.workers
FROM (SELECT count(*) AS workers FROM equeue_workers
      WHERE last_beat_at > :now - :stalled_after) AS w
LEFT JOIN queues AS s ON 1 = 1
ORDER BY s.name;

-- name: migration_applied
-- The migrations already applied.
SELECT name FROM equeue_migrations ORDER BY name;

-- name: migration_lock
-- Nothing to run: the BEGIN IMMEDIATE that opened this transaction holds the write lock, which
-- serialises concurrent migrators.
SELECT 1;

-- name: migration_record
-- Remember that a migration was applied.
INSERT INTO equeue_migrations (name) VALUES (:name);

-- name: migration_table_create
-- The table that tracks applied migrations.
CREATE TABLE IF NOT EXISTS equeue_migrations (
    name       TEXT PRIMARY KEY,
    applied_at REAL NOT NULL DEFAULT (CAST(strftime('%s', 'now') AS REAL))
);

-- name: queue_configure
-- Set a queue's limits, creating its settings row if it has none; a limit whose :set_ flag is
-- false keeps its value.
INSERT INTO equeue_queues AS q (name, concurrency, rate_limit, rate_period, updated_at)
VALUES (:name, :concurrency, :rate_limit, :rate_period, :now)
ON CONFLICT (name) DO UPDATE
SET concurrency = CASE WHEN :set_concurrency THEN excluded.concurrency ELSE q.concurrency END,
    rate_limit = CASE WHEN :set_rate THEN excluded.rate_limit ELSE q.rate_limit END,
    rate_period = CASE WHEN :set_rate THEN excluded.rate_period ELSE q.rate_period END,
    updated_at = excluded.updated_at;

-- name: queue_find
-- The queues that have claimable jobs or settings, among :queues (a JSON array; NULL: all):
-- what a worker serves. The claimable ones are found by a skip scan of
-- equeue_jobs_queue_claimable_idx, one index probe per queue.
WITH RECURSIVE found (queue) AS (
    SELECT min(queue) FROM equeue_jobs WHERE status IN ('queued', 'retrying') AND blocked = 0
    UNION ALL
    SELECT (SELECT min(j.queue) FROM equeue_jobs AS j
            WHERE j.status IN ('queued', 'retrying') AND j.blocked = 0
              AND j.queue > found.queue)
    FROM found
    WHERE found.queue IS NOT NULL
),
names (name) AS (
    SELECT queue FROM found WHERE queue IS NOT NULL
    UNION
    SELECT name FROM equeue_queues
)
SELECT n.name, coalesce(q.paused, 0) AS paused, q.concurrency, q.rate_limit, q.rate_period,
       n.name IN (SELECT queue FROM found WHERE queue IS NOT NULL) AS claimable
FROM names AS n
LEFT JOIN equeue_queues AS q ON q.name = n.name
WHERE :queues IS NULL OR n.name IN (SELECT value FROM json_each(:queues))
ORDER BY n.name;

-- name: queue_list
-- Every queue that holds jobs or has settings (or only :name), with its jobs counted by status:
-- one row per queue and status, status NULL for a queue without jobs.
WITH counts AS (
    SELECT queue, status, count(*) AS count
    FROM equeue_jobs
    WHERE :name IS NULL OR queue = :name
    GROUP BY queue, status
),
names (name) AS (
    SELECT queue FROM counts
    UNION
    SELECT name FROM equeue_queues WHERE :name IS NULL OR name = :name
)
SELECT n.name, coalesce(q.paused, 0) AS paused, q.concurrency, q.rate_limit, q.rate_period,
       c.status, coalesce(c.count, 0) AS count
FROM names AS n
LEFT JOIN equeue_queues AS q ON q.name = n.name
LEFT JOIN counts AS c ON c.queue = n.name
ORDER BY n.name;

-- name: queue_note_starts
-- Record :started jobs of a limited :queue claimed now (in the claim's transaction), keeping only
-- the starts still inside its rate window, each [microseconds, jobs].
UPDATE equeue_queues
SET claimed_total = claimed_total + :started,
    starts = CASE WHEN rate_limit IS NULL THEN '[]' ELSE json_insert(
        coalesce((SELECT json_group_array(json(e.value))
                  FROM json_each(equeue_queues.starts) AS e
                  WHERE json_extract(e.value, '$[0]')
                        > :now - rate_period * 1000000 - :rate_margin), '[]'),
        '$[#]', json_array(:now, :started)) END
WHERE name = :queue AND (concurrency IS NOT NULL OR rate_limit IS NOT NULL);

-- name: queue_pause
-- Pause or resume a queue, creating its settings row if it has none.
INSERT INTO equeue_queues AS q (name, paused, updated_at)
VALUES (:name, :paused, :now)
ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at;

-- name: queue_room
-- How many of :queue's jobs a claim may start now, at most :limit: none while the queue is
-- paused, its concurrency less its running jobs, its rate less the starts inside the window.
SELECT CASE WHEN s.paused THEN 0 ELSE max(0, min(
    :limit,
    coalesce(s.concurrency - (SELECT count(*) FROM equeue_jobs
                              WHERE queue = :queue AND status = 'processing'), :limit),
    coalesce(s.rate_limit - (SELECT coalesce(sum(json_extract(e.value, '$[1]')), 0)
                             FROM json_each(s.starts) AS e
                             WHERE json_extract(e.value, '$[0]')
                                   > :now - s.rate_period * 1000000 - :rate_margin), :limit)
)) END AS room
FROM (SELECT 1) AS one
LEFT JOIN equeue_queues AS s ON s.name = :queue;

-- name: queue_stats
-- Per queue and status: how many jobs, how long the oldest due job has waited (seconds), and
-- how many finished in the last minute.
SELECT queue, status, count(*) AS count,
       (:now - min(CASE WHEN status IN ('queued', 'retrying') AND blocked = 0
                             AND scheduled_at <= :now
                        THEN scheduled_at END)) / 1000000.0 AS oldest_due_age,
       sum(CASE WHEN finished_at > :now - 60000000 THEN 1 ELSE 0 END) AS finished_last_minute
FROM equeue_jobs
GROUP BY queue, status;

-- name: schedule_claim
-- Move a schedule on to :tick for the job :job_id, in the transaction that then inserts it.
-- BEGIN IMMEDIATE makes processes racing for one tick take turns: the first moves last_tick
-- to :tick, and the others find it there and update nothing, so they insert nothing. A
-- process whose cron or time zone is not the one last registered updates nothing.
UPDATE equeue_schedules
SET last_tick = :tick, last_run_at = :tick, last_job_id = :job_id, updated_at = :now
WHERE name = :name AND last_tick < :tick AND cron = :cron AND timezone = :timezone
RETURNING name;

-- name: schedule_list
-- The schedules named in :names (a JSON array) that the table holds.
SELECT name, cron, timezone, job_type, last_tick, last_run_at, last_job_id, updated_at
FROM equeue_schedules
WHERE name IN (SELECT value FROM json_each(:names))
ORDER BY name;

-- name: schedule_register
-- Write a schedule's definition as a starting worker declares it, keeping how far it has run;
-- with another cron or time zone, it goes on from :last_tick (the new definition's latest
-- tick): the old definition's missed ticks are not the new one's to run.
INSERT INTO equeue_schedules AS s (
    name, cron, timezone, job_type, payload, last_tick, updated_at)
VALUES (:name, :cron, :timezone, :job_type, :payload, :last_tick, :now)
ON CONFLICT (name) DO UPDATE
SET cron = excluded.cron, timezone = excluded.timezone, job_type = excluded.job_type,
    payload = excluded.payload,
    last_tick = CASE WHEN s.cron = excluded.cron AND s.timezone = excluded.timezone
                     THEN s.last_tick ELSE max(s.last_tick, excluded.last_tick) END,
    updated_at = excluded.updated_at
RETURNING name, cron, timezone, job_type, last_tick, last_run_at, last_job_id, updated_at;

-- name: worker_deregister
-- Forget a worker that stopped cleanly.
DELETE FROM equeue_workers WHERE id = :id;

-- name: worker_forget
-- Forget workers silent for :stalled_after (their jobs were just rescued); never the caller's.
DELETE FROM equeue_workers
WHERE last_beat_at <= :now - :stalled_after AND id <> :worker_id
RETURNING id;

-- name: worker_heartbeat
-- Prove a worker alive; no row back means it was declared lost.
UPDATE equeue_workers SET last_beat_at = :now WHERE id = :id RETURNING id;

-- name: worker_list
-- Every registered worker process, with how many jobs it runs now.
SELECT w.id, w.hostname, w.pid, w.queues, w.concurrency, w.started_at, w.last_beat_at,
       (SELECT count(*) FROM equeue_jobs AS j
        WHERE j.status = 'processing' AND j.worker_id = w.id) AS running
FROM equeue_workers AS w
ORDER BY w.hostname, w.pid, w.id;

-- name: worker_register
-- Record a starting worker process (or refresh one that was declared lost and came back).
INSERT INTO equeue_workers (id, hostname, pid, queues, concurrency, started_at, last_beat_at)
VALUES (:id, :hostname, :pid, :queues, :concurrency, :now, :now)
ON CONFLICT (id) DO UPDATE SET last_beat_at = :now;
