-- Every runtime statement of the PostgreSQL backend, one per name, in alphabetical order.
-- Format: "-- name: <query>", a one-line description, then the statement.
-- Times come from the database (now()), so every machine shares one clock, unless the queue has
-- a clock of its own (a test's): then :now carries its time, and coalesce(:now, now()) takes it.
-- Notifications go to the channel "equeue" as "<kind>:<values>": available:<queue> (jobs to
-- claim), cancel:<id> (stop a running job), done:<ids> (jobs that ended), queue:<name> (settings
-- changed). PostgreSQL delivers them only when the transaction commits, so a wake-up never
-- announces a job that a rollback removed.
-- JSON goes in as text cast to jsonb: the statements then read the same whether they run on the
-- package's own connections or on a host's SQLAlchemy connection (whose jsonb codec encodes).

-- name: change_marker
-- What changes when jobs or queues change, in any process, read from small indexes only: the
-- jobs waiting and running, the newest job, the latest end per final status, and the latest
-- settings change. Worker heartbeats, which write every few seconds, change none.
SELECT (SELECT count(*) FROM equeue_jobs
        WHERE status IN ('queued', 'retrying') AND NOT blocked) AS waiting,
       (SELECT count(*) FROM equeue_jobs WHERE status = 'processing') AS running,
       (SELECT max(created_at) FROM equeue_jobs) AS created,
       (SELECT max(finished_at) FROM equeue_jobs WHERE status = 'completed') AS completed,
       (SELECT max(finished_at) FROM equeue_jobs WHERE status = 'failed') AS failed,
       (SELECT max(finished_at) FROM equeue_jobs WHERE status = 'cancelled') AS cancelled,
       (SELECT max(updated_at) FROM equeue_queues) AS settings;

-- name: job_cancel
-- Cancel a waiting job at once (announced as done); flag a running one and tell its worker.
UPDATE equeue_jobs
SET status = CASE WHEN status = 'processing' THEN status ELSE 'cancelled' END,
    cancel_requested = (status = 'processing'),
    finished_at = CASE WHEN status = 'processing' THEN NULL
                       ELSE coalesce(CAST(:now AS timestamptz), now()) END,
    release_pending = has_dependents AND status <> 'processing'
WHERE id = CAST(:id AS uuid) AND status IN ('queued', 'retrying', 'processing')
RETURNING *, pg_notify('equeue', CASE WHEN status = 'processing' THEN 'cancel:' ELSE 'done:' END
                                 || id::text) IS NULL AS notified;

-- name: job_claim
-- Take up to :limit due jobs of :queue, a queue without settings, for one worker, highest
-- priority first. It takes none if the queue has settings after all (paused, or a limit): those
-- are claimed by job_claim_limited, which enforces them, and this claim needs no lock on them.
WITH due AS (
    -- SKIP LOCKED sits here so that concurrent claimers pass over each other's rows instead of
    -- queueing behind them; the CTE fixes the LIMIT before the UPDATE, which a subquery in the
    -- UPDATE's WHERE would not guarantee. The ORDER BY is equeue_jobs_queue_claimable_idx's.
    -- A worker declared lost (its row deleted) claims nothing until it registers again: jobs
    -- it took in the meantime would look abandoned to every rescuer and run twice.
    SELECT j.id
    FROM equeue_jobs AS j
    WHERE j.queue = :queue AND j.status IN ('queued', 'retrying') AND NOT j.blocked
      AND j.scheduled_at <= coalesce(CAST(:now AS timestamptz), now())
      AND EXISTS (SELECT 1 FROM equeue_workers WHERE id = CAST(:worker_id AS uuid))
      AND NOT EXISTS (
          SELECT 1 FROM equeue_queues AS q
          WHERE q.name = :queue
            AND (q.paused OR q.concurrency IS NOT NULL OR q.rate_limit IS NOT NULL))
    ORDER BY j.priority DESC, j.scheduled_at, j.id
    LIMIT :limit
    FOR UPDATE OF j SKIP LOCKED
)
-- = ANY(ARRAY(...)) reads the claimed rows by primary key whatever the planner guesses of
-- "due", whose size it cannot know.
UPDATE equeue_jobs AS j
SET status = 'processing', attempts = j.attempts + 1,
    started_at = coalesce(CAST(:now AS timestamptz), now()),
    worker_id = CAST(:worker_id AS uuid)
WHERE j.id = ANY(ARRAY(SELECT id FROM due))
RETURNING j.*;

-- name: job_claim_limited
-- Take up to :limit due jobs of :queue for one worker, highest priority first, as far as the
-- queue's settings allow: none while it is paused, never more of its jobs running than its
-- concurrency over every worker, never more started than its rate in any window of its period.
-- Returns the claimed rows, each with "room" (how many the settings allowed, at most :limit);
-- with none claimed, one row of NULLs that carries it.
WITH t AS (
    SELECT coalesce(CAST(:now AS timestamptz), now()) AS now
),
seen AS (
    -- The queue's settings as this statement's snapshot has them.
    SELECT paused, concurrency, rate_limit, rate_period, claimed_total
    FROM equeue_queues
    WHERE name = :queue
),
held AS (
    -- A limited queue's row, locked: the claimers of a limited queue take turns. Waiting for
    -- the lock hands back the row's newest version (READ COMMITTED re-reads a row it waited
    -- for), so claimed_total here minus claimed_total in "seen" is what other claimers took
    -- since this snapshot, which the snapshot's count of running jobs cannot see. Claimers
    -- lock one queue row each, so they never deadlock.
    SELECT claimed_total, starts
    FROM equeue_queues
    WHERE name = :queue AND (concurrency IS NOT NULL OR rate_limit IS NOT NULL)
    FOR UPDATE
),
room AS (
    -- least() ignores NULLs: a limit that is not set does not bind. CASE keeps the counting
    -- subqueries from running for a queue without that limit. The rate window ends at
    -- clock_timestamp(), read here once the queue's row is locked (now() is from before any
    -- wait for the lock: starts recorded with it would let the next window open early).
    SELECT CASE WHEN s.paused THEN 0 ELSE greatest(0, least(
        CAST(:limit AS integer),
        CASE WHEN s.concurrency IS NOT NULL THEN
            s.concurrency - (h.claimed_total - s.claimed_total) - (
                SELECT count(*) FROM equeue_jobs
                WHERE queue = :queue AND status = 'processing')
        END,
        CASE WHEN s.rate_limit IS NOT NULL THEN
            s.rate_limit - (
                SELECT coalesce(sum(CAST(e ->> 1 AS integer)), 0)
                FROM jsonb_array_elements(h.starts) AS e
                WHERE CAST(e ->> 0 AS double precision)
                      > CAST(extract(epoch FROM coalesce(CAST(:now AS timestamptz),
                                                        clock_timestamp())) AS double precision)
                        - s.rate_period - CAST(:rate_margin AS double precision))
        END)) END AS n
    FROM t
    LEFT JOIN seen AS s ON true
    LEFT JOIN held AS h ON true
),
due AS (
    -- As in job_claim, limited by the room.
    SELECT j.id
    FROM equeue_jobs AS j, t
    WHERE j.queue = :queue AND j.status IN ('queued', 'retrying') AND NOT j.blocked
      AND j.scheduled_at <= t.now
      AND EXISTS (SELECT 1 FROM equeue_workers WHERE id = CAST(:worker_id AS uuid))
    ORDER BY j.priority DESC, j.scheduled_at, j.id
    LIMIT (SELECT n FROM room)
    FOR UPDATE OF j SKIP LOCKED
),
claimed AS (
    UPDATE equeue_jobs AS j
    SET status = 'processing', attempts = j.attempts + 1, started_at = t.now,
        worker_id = CAST(:worker_id AS uuid)
    FROM t
    WHERE j.id = ANY(ARRAY(SELECT id FROM due))
    RETURNING j.*
),
noted AS (
    -- What the next claimer of a limited queue reads: the claims, and the starts still inside
    -- the rate window (each [epoch seconds, jobs]).
    UPDATE equeue_queues AS q
    SET claimed_total = q.claimed_total + c.n,
        starts = CASE WHEN q.rate_limit IS NULL THEN CAST('[]' AS jsonb) ELSE coalesce((
            SELECT jsonb_agg(e)
            FROM jsonb_array_elements(q.starts) AS e
            WHERE CAST(e ->> 0 AS double precision) > c.at - q.rate_period
                                                      - CAST(:rate_margin AS double precision)
        ), CAST('[]' AS jsonb)) || jsonb_build_array(jsonb_build_array(c.at, c.n)) END
    FROM (SELECT count(*) AS n,
                 CAST(extract(epoch FROM coalesce(CAST(:now AS timestamptz), clock_timestamp()))
                      AS double precision) AS at
          FROM claimed) AS c
    WHERE q.name = :queue AND c.n > 0 AND EXISTS (SELECT 1 FROM held)
)
SELECT claimed.*, room.n AS room
FROM room
LEFT JOIN claimed ON true;

-- name: job_complete_many
-- Write a batch of attempt outcomes (a JSON array) and announce the jobs that ended.
-- The fence (attempt, worker, status = processing) makes a late, duplicate or zombie write a
-- no-op: once the rescuer or another worker has moved the job on, this attempt's word is void.
-- "queued" is an attempt interrupted by shutdown: it goes back without counting. A cancel
-- requested while the attempt was ending wins over a retry or a put-back; it is read from the
-- locked row itself (not from a snapshot) so that one landing concurrently is not missed.
WITH outcome AS (
    SELECT *
    FROM jsonb_to_recordset(CAST(CAST(:rows AS text) AS jsonb)) AS o(
        id uuid, attempt integer, worker_id uuid, status text, result text, error jsonb,
        retry_delay double precision)
),
updated AS (
    UPDATE equeue_jobs AS j
    SET status = CASE WHEN j.cancel_requested AND o.status IN ('retrying', 'queued')
                      THEN 'cancelled' ELSE o.status END,
        attempts = CASE WHEN o.status = 'queued' AND NOT j.cancel_requested
                        THEN j.attempts - 1 ELSE j.attempts END,
        result = CASE WHEN o.status = 'completed' THEN CAST(o.result AS jsonb) ELSE j.result END,
        errors = CASE WHEN o.error IS NULL THEN j.errors ELSE j.errors || jsonb_build_array(o.error) END,
        last_error = CASE WHEN o.error IS NULL THEN j.last_error ELSE o.error ->> 'error' END,
        scheduled_at = CASE WHEN o.status = 'retrying' AND NOT j.cancel_requested
                            THEN coalesce(CAST(:now AS timestamptz), now()) + make_interval(secs => o.retry_delay)
                            ELSE j.scheduled_at END,
        started_at = CASE WHEN o.status = 'queued' AND NOT j.cancel_requested
                          THEN NULL ELSE j.started_at END,
        finished_at = CASE WHEN o.status IN ('completed', 'failed', 'cancelled')
                                OR j.cancel_requested THEN coalesce(CAST(:now AS timestamptz), now()) END,
        worker_id = NULL,
        cancel_requested = false,
        -- has_dependents is the newest row's: a dependent whose insert this write waited for
        -- is released by job_release, in a statement that sees it.
        release_pending = j.has_dependents
                          AND (o.status IN ('completed', 'failed', 'cancelled') OR j.cancel_requested)
    FROM outcome AS o
    WHERE j.id = o.id AND j.attempts = o.attempt AND j.worker_id = o.worker_id
      AND j.status = 'processing'
    RETURNING j.id, j.status, j.queue, j.release_pending
),
done AS (
    -- One notification per batch, not per job; ids are 36 characters and a batch is at most
    -- 100 outcomes, well under NOTIFY's 8000-byte payload limit.
    SELECT pg_notify('equeue', 'done:' || string_agg(id::text, ','))
    FROM updated
    WHERE status IN ('completed', 'failed', 'cancelled')
    HAVING count(*) > 0
),
requeued AS (
    SELECT pg_notify('equeue', 'available:' || queue)
    FROM (SELECT DISTINCT queue FROM updated WHERE status = 'queued') AS q
)
SELECT id, status, queue, release_pending
FROM updated
-- The one-time filter makes PostgreSQL run the notifying CTEs, which it would otherwise skip.
WHERE (SELECT count(*) FROM done) + (SELECT count(*) FROM requeued) >= 0;

-- name: job_count
-- How many jobs the filters match, counting no further than :cap (a bulk action's preview). As in
-- job_list, each way of reading is a branch of its own: by status on the status index, else on
-- the creation index.
SELECT count(*) AS count
FROM (
    (SELECT 1
     FROM equeue_jobs
     WHERE CAST(:status AS text) IS NULL
       AND (CAST(:job_type AS text) IS NULL OR job_type = :job_type)
       AND (CAST(:queue AS text) IS NULL OR queue = :queue)
     LIMIT :cap)
    UNION ALL
    (SELECT 1
     FROM equeue_jobs
     WHERE status = :status
       AND (CAST(:job_type AS text) IS NULL OR job_type = :job_type)
       AND (CAST(:queue AS text) IS NULL OR queue = :queue)
     LIMIT :cap)
) AS matched;

-- name: job_dependencies_edges
-- One edge per dependency of new jobs (a JSON array of {"id", "depends_on": [ids], "blocked"}).
INSERT INTO equeue_dependencies (depends_on, job_id)
SELECT DISTINCT CAST(d AS uuid), CAST(l ->> 'id' AS uuid)
FROM jsonb_array_elements(CAST(CAST(:links AS text) AS jsonb)) AS l,
     jsonb_array_elements_text(l -> 'depends_on') AS d
ON CONFLICT DO NOTHING;

-- name: job_dependencies_link
-- Record what new jobs wait for (a JSON array of {"id", "depends_on": [ids], "blocked"}): the
-- list each job shows, and whether it is blocked (job_dependencies_edges adds the edges).
UPDATE equeue_jobs AS j
SET depends_on = l -> 'depends_on', blocked = CAST(l ->> 'blocked' AS boolean)
FROM jsonb_array_elements(CAST(CAST(:links AS text) AS jsonb)) AS l
WHERE j.id = CAST(l ->> 'id' AS uuid);

-- name: job_dependencies_lock
-- Mark the jobs that new jobs depend on (a JSON array of ids) as having dependents, and return
-- their newest statuses. The row lock makes an ending dependency's write wait for the new
-- jobs' commit; that write then sees the mark, and has its dependents released. The locks are
-- taken in id order whatever the plan, so that two enqueues naming the same jobs never each
-- wait for the other.
WITH locked AS (
    SELECT id
    FROM equeue_jobs
    WHERE id IN (
        SELECT CAST(jsonb_array_elements_text(CAST(CAST(:ids AS text) AS jsonb)) AS uuid))
    ORDER BY id
    FOR UPDATE
)
UPDATE equeue_jobs AS j
SET has_dependents = true
FROM locked
WHERE j.id = locked.id
RETURNING j.id, j.status;

-- name: job_get
-- One job by id.
SELECT * FROM equeue_jobs WHERE id = CAST(:id AS uuid);

-- name: job_get_by_keys
-- The jobs holding these idempotency keys (a JSON array).
SELECT *
FROM equeue_jobs
WHERE idempotency_key IN (SELECT jsonb_array_elements_text(CAST(CAST(:keys AS text) AS jsonb)));

-- name: job_insert
-- Insert one job and wake its queue's workers: job_insert_many for the most common call, with
-- no arrays to unpack and no grouping of queues. A key that exists skips the row (and the
-- NOTIFY with it, which RETURNING sends only for an inserted row), and so does an id that
-- exists: a retry, after a lost connection, of an insert that had committed.
INSERT INTO equeue_jobs (
    id, job_type, queue, payload, priority, max_attempts, created_at, scheduled_at,
    idempotency_key, trace_context)
SELECT CAST(:id AS uuid), :job_type, :queue, CAST(CAST(:payload AS text) AS jsonb), :priority,
       :max_attempts, t.now, coalesce(CAST(:run_at AS timestamptz),
                                      t.now + make_interval(secs => :delay)),
       :idempotency_key, CAST(CAST(:trace_context AS text) AS jsonb)
FROM (SELECT coalesce(CAST(:now AS timestamptz), now()) AS now) AS t
ON CONFLICT DO NOTHING
RETURNING id, payload, created_at, scheduled_at,
          pg_notify('equeue', 'available:' || queue) IS NULL AS notified;

-- name: job_insert_many
-- Insert a batch of jobs (one array per column) in one statement and wake their queues' workers.
-- A key or an id that exists already skips its row: ON CONFLICT waits for a concurrent inserter
-- of the same key to commit, so concurrent enqueues with one key make one row.
-- The wake-up is one NOTIFY per queue per statement, sent at commit (also the host's commit).
WITH inserted AS (
    INSERT INTO equeue_jobs (
        id, job_type, queue, payload, priority, max_attempts, created_at, scheduled_at,
        idempotency_key, trace_context)
    SELECT r.id, r.job_type, r.queue, CAST(r.payload AS jsonb), r.priority, r.max_attempts,
           t.now, coalesce(r.run_at, t.now + make_interval(secs => r.delay)), r.idempotency_key,
           CAST(r.trace_context AS jsonb)
    FROM (SELECT coalesce(CAST(:now AS timestamptz), now()) AS now) AS t, unnest(
        CAST(:ids AS uuid[]), CAST(:job_types AS text[]), CAST(:queues AS text[]),
        CAST(:payloads AS text[]), CAST(:priorities AS integer[]),
        CAST(:max_attempts AS integer[]), CAST(:delays AS double precision[]),
        CAST(:run_ats AS timestamptz[]), CAST(:keys AS text[]), CAST(:trace_contexts AS text[])
    ) AS r(id, job_type, queue, payload, priority, max_attempts, delay, run_at, idempotency_key,
           trace_context)
    ON CONFLICT DO NOTHING
    RETURNING id, queue, payload, created_at, scheduled_at
)
SELECT inserted.id, inserted.payload, inserted.created_at, inserted.scheduled_at,
       (SELECT count(pg_notify('equeue', 'available:' || q.queue))
        FROM (SELECT DISTINCT queue FROM inserted) AS q) AS notified
FROM inserted;

-- name: job_list
-- A page of jobs, newest first, after a keyset position, with optional filters.
-- The statement keeps one generic plan, so each way of reading is a branch of its own that
-- runs only when its one-time filter holds: by status on the status index, else on the
-- creation index. The keyset bound is always an index condition: with no cursor it is infinity.
SELECT *
FROM (
    (SELECT *
     FROM equeue_jobs
     WHERE CAST(:status AS text) IS NULL
       AND (CAST(:job_type AS text) IS NULL OR job_type = :job_type)
       AND (CAST(:queue AS text) IS NULL OR queue = :queue)
       AND (created_at, id) < (coalesce(CAST(:after_created AS timestamptz), 'infinity'),
                               coalesce(CAST(:after_id AS uuid),
                                        'ffffffff-ffff-ffff-ffff-ffffffffffff'))
     ORDER BY created_at DESC, id DESC
     LIMIT :limit)
    UNION ALL
    (SELECT *
     FROM equeue_jobs
     WHERE status = :status
       AND (CAST(:job_type AS text) IS NULL OR job_type = :job_type)
       AND (CAST(:queue AS text) IS NULL OR queue = :queue)
       AND (created_at, id) < (coalesce(CAST(:after_created AS timestamptz), 'infinity'),
                               coalesce(CAST(:after_id AS uuid),
                                        'ffffffff-ffff-ffff-ffff-ffffffffffff'))
     ORDER BY created_at DESC, id DESC
     LIMIT :limit)
) AS page
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: job_processing_by_worker
-- The jobs the database holds as running on one worker (with whether each was asked to cancel).
SELECT *
FROM equeue_jobs
WHERE status = 'processing' AND worker_id = CAST(:worker_id AS uuid);

-- name: job_progress
-- Store an attempt's progress, fenced like its outcome: a stale attempt's word is void.
UPDATE equeue_jobs
SET progress = CAST(CAST(:progress AS text) AS jsonb)
WHERE id = CAST(:id AS uuid) AND attempts = :attempt AND worker_id = CAST(:worker_id AS uuid)
  AND status = 'processing'
RETURNING id;

-- name: job_prune
-- Delete finished jobs past their retention (:retention seconds for completed and cancelled
-- ones, :failed_retention for failed ones; NULL keeps them), up to :limit of each status,
-- freeing their idempotency keys. Each CTE reads one status's range of
-- equeue_jobs_finished_idx from its oldest end: with one status and ORDER BY finished_at, the
-- statement's generic plan (which cannot know how many rows the cut-off passes) still takes
-- the index, and stops at the first row young enough to keep. A CTE whose retention is NULL is
-- skipped outright. SKIP LOCKED lets many workers prune at once.
WITH completed AS (
    SELECT id FROM equeue_jobs
    WHERE status = 'completed' AND CAST(:retention AS double precision) IS NOT NULL
      AND finished_at < coalesce(CAST(:now AS timestamptz), now())
                        - make_interval(secs => :retention)
    ORDER BY finished_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
),
cancelled AS (
    SELECT id FROM equeue_jobs
    WHERE status = 'cancelled' AND CAST(:retention AS double precision) IS NOT NULL
      AND finished_at < coalesce(CAST(:now AS timestamptz), now())
                        - make_interval(secs => :retention)
    ORDER BY finished_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
),
failed AS (
    SELECT id FROM equeue_jobs
    WHERE status = 'failed' AND CAST(:failed_retention AS double precision) IS NOT NULL
      AND finished_at < coalesce(CAST(:now AS timestamptz), now())
                        - make_interval(secs => :failed_retention)
    ORDER BY finished_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
DELETE FROM equeue_jobs
WHERE id = ANY(ARRAY(SELECT id FROM completed UNION ALL SELECT id FROM cancelled
                     UNION ALL SELECT id FROM failed))
RETURNING status;

-- name: job_release
-- Move the blocked dependents of ended jobs (a JSON array of ids): one whose dependencies all
-- completed may run; one with a dependency that failed or was cancelled is cancelled, its
-- error naming that dependency (then it has dependents of its own to release, in turn).
-- Statuses are read in this statement's snapshot, taken after the ends it releases for were
-- committed; a dependent moved already (blocked no more) is left alone, so releasing twice
-- is harmless.
WITH verdict AS (
    SELECT e.job_id AS id,
           bool_and(p.status = 'completed') AS ready,
           min(CASE WHEN p.status IN ('failed', 'cancelled')
                    THEN 'DependencyFailed: job ' || p.id::text || ' ended ' || p.status END)
               AS error
    FROM equeue_dependencies AS e
    JOIN equeue_jobs AS p ON p.id = e.depends_on
    WHERE e.job_id IN (
        SELECT job_id FROM equeue_dependencies
        WHERE depends_on IN (
            SELECT CAST(jsonb_array_elements_text(CAST(CAST(:ids AS text) AS jsonb)) AS uuid)))
    GROUP BY e.job_id
)
UPDATE equeue_jobs AS j
SET blocked = false,
    status = CASE WHEN v.error IS NULL THEN j.status ELSE 'cancelled' END,
    finished_at = CASE WHEN v.error IS NULL THEN j.finished_at
                       ELSE coalesce(CAST(:now AS timestamptz), now()) END,
    last_error = coalesce(v.error, j.last_error),
    errors = CASE WHEN v.error IS NULL THEN j.errors ELSE j.errors || jsonb_build_array(
        jsonb_build_object('attempt', j.attempts, 'error', v.error, 'traceback', NULL,
                           'at', coalesce(CAST(:now AS timestamptz), now()))) END,
    release_pending = j.has_dependents AND v.error IS NOT NULL
FROM verdict AS v
WHERE j.id = v.id AND j.blocked AND j.status IN ('queued', 'retrying')
  AND (v.ready OR v.error IS NOT NULL)
RETURNING j.*,
          pg_notify('equeue', CASE WHEN j.status = 'cancelled' THEN 'done:' || j.id::text
                                   ELSE 'available:' || j.queue END) IS NULL AS notified;

-- name: job_release_done
-- The dependents of these ended jobs (a JSON array of ids) were released.
UPDATE equeue_jobs
SET release_pending = false
WHERE id IN (SELECT CAST(jsonb_array_elements_text(CAST(CAST(:ids AS text) AS jsonb)) AS uuid))
  AND release_pending;

-- name: job_release_pending
-- Ended jobs whose dependents still wait for their release (a worker died in between).
SELECT id FROM equeue_jobs WHERE release_pending LIMIT :limit;

-- name: job_rescue_stalled
-- Take back running jobs whose worker has been silent for :stalled_after seconds. The lost
-- attempt counts (a WorkerLost error); with none left the job fails, and a job that was being
-- cancelled ends cancelled. SKIP LOCKED lets every worker run this at once, and a job whose
-- completion is being written right now is left to that write. The rescuing worker, alive by
-- definition, never rescues its own jobs.
WITH lost AS (
    SELECT j.id
    FROM equeue_jobs AS j
    WHERE j.status = 'processing' AND j.worker_id <> CAST(:worker_id AS uuid)
      AND NOT EXISTS (
          SELECT 1 FROM equeue_workers AS w
          WHERE w.id = j.worker_id
            AND w.last_beat_at > coalesce(CAST(:now AS timestamptz), now())
                                 - make_interval(secs => :stalled_after))
    FOR UPDATE SKIP LOCKED
)
UPDATE equeue_jobs AS j
SET status = CASE WHEN j.cancel_requested THEN 'cancelled'
                  WHEN j.attempts >= j.max_attempts THEN 'failed'
                  ELSE 'queued' END,
    errors = j.errors || jsonb_build_array(jsonb_build_object(
        'attempt', j.attempts,
        'error', CAST(:error AS text),
        'traceback', NULL,
        'at', coalesce(CAST(:now AS timestamptz), now()),
        'worker_id', j.worker_id)),
    last_error = CAST(:error AS text),
    finished_at = CASE WHEN j.cancel_requested OR j.attempts >= j.max_attempts
                       THEN coalesce(CAST(:now AS timestamptz), now()) END,
    worker_id = NULL,
    cancel_requested = false,
    release_pending = j.has_dependents AND (j.cancel_requested OR j.attempts >= j.max_attempts)
FROM lost
WHERE j.id = lost.id
RETURNING j.*, pg_notify('equeue', CASE WHEN j.status = 'queued'
                                        THEN 'available:' || j.queue
                                        ELSE 'done:' || j.id::text END) IS NULL AS notified;

-- name: job_retry
-- Queue a failed or cancelled job again, attempts reset, errors kept.
UPDATE equeue_jobs
SET status = 'queued', attempts = 0, scheduled_at = coalesce(CAST(:now AS timestamptz), now()), started_at = NULL,
    finished_at = NULL, result = NULL, worker_id = NULL, cancel_requested = false,
    -- A dependent waits again for those of its dependencies that have not completed.
    blocked = EXISTS (
        SELECT 1 FROM equeue_dependencies AS e
        JOIN equeue_jobs AS p ON p.id = e.depends_on
        WHERE e.job_id = equeue_jobs.id AND p.status <> 'completed')
WHERE id = CAST(:id AS uuid) AND status IN ('failed', 'cancelled')
RETURNING *, pg_notify('equeue', 'available:' || queue) IS NULL AS notified;

-- name: job_throughput
-- Completed and failed jobs per minute (the minute's start, in epoch seconds) since :since, read
-- from the retention index.
SELECT status, floor(extract(epoch FROM finished_at) / 60) * 60 AS minute, count(*) AS count
FROM equeue_jobs
WHERE status IN ('completed', 'failed') AND finished_at >= CAST(:since AS timestamptz)
GROUP BY status, minute;

-- name: metrics_snapshot
-- Every queue with jobs that could run or with settings: paused or not, its backlog (queued
-- and retrying jobs not blocked on dependencies), the age in seconds of its oldest due one;
-- and on every row, the workers that beat within stalled_after seconds (one row of NULLs
-- carries that count when there is no queue). Cheap at any table size: the WHERE is the
-- predicate of equeue_jobs_queue_claimable_idx, whose rows are exactly the backlog, so the
-- planner reads that index or the status index's waiting entries, never the finished jobs.
WITH backlog AS (
    SELECT queue, count(*) AS backlog,
           min(scheduled_at) FILTER (
               WHERE scheduled_at <= coalesce(CAST(:now AS timestamptz), now())) AS oldest
    FROM equeue_jobs
    WHERE status IN ('queued', 'retrying') AND NOT blocked
    GROUP BY queue
),
names (name) AS (
    SELECT queue FROM backlog
    UNION
    SELECT name FROM equeue_queues
),
queues AS (
    SELECT n.name, coalesce(q.paused, false) AS paused, coalesce(b.backlog, 0) AS backlog,
           extract(epoch FROM coalesce(CAST(:now AS timestamptz), now()) - b.oldest) AS oldest_age
    FROM names AS n
    LEFT JOIN backlog AS b ON b.queue = n.name
    LEFT JOIN equeue_queues AS q ON q.name = n.name
)
SELECT s.name AS queue, s.paused, s.backlog, s.oldest_age, w.workers
FROM (SELECT count(*) AS workers FROM equeue_workers
      WHERE last_beat_at > coalesce(CAST(:now AS timestamptz), now())
                           - make_interval(secs => :stalled_after)) AS w
LEFT JOIN queues AS s ON true
ORDER BY s.name;

-- name: migration_applied
-- The migrations already applied.
SELECT name FROM equeue_migrations ORDER BY name;

-- name: migration_lock
-- Serialise concurrent migrators until this transaction ends (the key is arbitrary but fixed).
SELECT pg_advisory_xact_lock(7126351130);

-- name: migration_record
-- Remember that a migration was applied.
INSERT INTO equeue_migrations (name) VALUES (:name);

-- name: migration_table_create
-- The table that tracks applied migrations.
CREATE TABLE IF NOT EXISTS equeue_migrations (
    name       text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: notifier_probe
-- Sent on another connection, must reach the listening one: proves it alive and delivering.
SELECT pg_notify('equeue', 'probe:' || :token) IS NULL AS sent;

-- name: queue_configure
-- Set a queue's limits, creating its settings row if it has none; a limit whose :set_ flag is
-- false keeps its value. Tells every worker to read the settings again.
INSERT INTO equeue_queues AS q (name, concurrency, rate_limit, rate_period, updated_at)
VALUES (:name, CAST(:concurrency AS integer), CAST(:rate_limit AS integer),
        CAST(:rate_period AS integer), coalesce(CAST(:now AS timestamptz), now()))
ON CONFLICT (name) DO UPDATE
SET concurrency = CASE WHEN CAST(:set_concurrency AS boolean) THEN excluded.concurrency
                       ELSE q.concurrency END,
    rate_limit = CASE WHEN CAST(:set_rate AS boolean) THEN excluded.rate_limit
                      ELSE q.rate_limit END,
    rate_period = CASE WHEN CAST(:set_rate AS boolean) THEN excluded.rate_period
                       ELSE q.rate_period END,
    updated_at = excluded.updated_at
RETURNING name, pg_notify('equeue', 'queue:' || name) IS NULL AS notified;

-- name: queue_find
-- The queues that have claimable jobs or settings, among :queues (a JSON array; NULL: all):
-- what a worker serves. The claimable ones are found by a skip scan of
-- equeue_jobs_queue_claimable_idx, one index probe per queue.
WITH RECURSIVE found (queue) AS (
    (SELECT queue FROM equeue_jobs
     WHERE status IN ('queued', 'retrying') AND NOT blocked
     ORDER BY queue
     LIMIT 1)
    UNION ALL
    SELECT (SELECT j.queue FROM equeue_jobs AS j
            WHERE j.status IN ('queued', 'retrying') AND NOT j.blocked AND j.queue > found.queue
            ORDER BY j.queue
            LIMIT 1)
    FROM found
    WHERE found.queue IS NOT NULL
),
names (name) AS (
    SELECT queue FROM found WHERE queue IS NOT NULL
    UNION
    SELECT name FROM equeue_queues
)
SELECT n.name, coalesce(q.paused, false) AS paused, q.concurrency, q.rate_limit, q.rate_period,
       n.name IN (SELECT queue FROM found WHERE queue IS NOT NULL) AS claimable
FROM names AS n
LEFT JOIN equeue_queues AS q ON q.name = n.name
WHERE CAST(:queues AS text) IS NULL
   OR n.name IN (SELECT jsonb_array_elements_text(CAST(CAST(:queues AS text) AS jsonb)))
ORDER BY n.name;

-- name: queue_list
-- Every queue that holds jobs or has settings (or only :name), with its jobs counted by status:
-- one row per queue and status, status NULL for a queue without jobs.
WITH counts AS (
    SELECT queue, status, count(*) AS count
    FROM equeue_jobs
    WHERE CAST(:name AS text) IS NULL OR queue = :name
    GROUP BY queue, status
),
names (name) AS (
    SELECT queue FROM counts
    UNION
    SELECT name FROM equeue_queues WHERE CAST(:name AS text) IS NULL OR name = :name
)
SELECT n.name, coalesce(q.paused, false) AS paused, q.concurrency, q.rate_limit, q.rate_period,
       c.status, coalesce(c.count, 0) AS count
FROM names AS n
LEFT JOIN equeue_queues AS q ON q.name = n.name
LEFT JOIN counts AS c ON c.queue = n.name
ORDER BY n.name;

-- name: queue_pause
-- Pause or resume a queue, creating its settings row if it has none. Tells every worker to read
-- the settings again.
INSERT INTO equeue_queues AS q (name, paused, updated_at)
VALUES (:name, CAST(:paused AS boolean), coalesce(CAST(:now AS timestamptz), now()))
ON CONFLICT (name) DO UPDATE
SET paused = excluded.paused, updated_at = excluded.updated_at
RETURNING name, pg_notify('equeue', 'queue:' || name) IS NULL AS notified;

-- name: queue_stats
-- Per queue and status: how many jobs, how long the oldest due job has waited (seconds), and
-- how many finished in the last minute.
SELECT queue, status, count(*) AS count,
       extract(epoch FROM coalesce(CAST(:now AS timestamptz), now()) - min(scheduled_at) FILTER (
           WHERE status IN ('queued', 'retrying') AND NOT blocked
             AND scheduled_at <= coalesce(CAST(:now AS timestamptz), now()))) AS oldest_due_age,
       count(*) FILTER (WHERE finished_at > coalesce(CAST(:now AS timestamptz), now()) - interval '1 minute') AS finished_last_minute
FROM equeue_jobs
GROUP BY queue, status;

-- name: schedule_claim
-- Move a schedule on to :tick for the job :job_id, in the transaction that then inserts it.
-- Processes racing for one tick all run this: the first takes the row's lock, and the others
-- wait for it, then read the row again as it committed (READ COMMITTED re-reads a row it
-- waited for), find last_tick = :tick and update nothing, so they insert nothing. A process
-- whose cron or time zone is not the one last registered (a rolling deploy) updates nothing.
UPDATE equeue_schedules
SET last_tick = CAST(:tick AS timestamptz), last_run_at = CAST(:tick AS timestamptz),
    last_job_id = CAST(:job_id AS uuid),
    updated_at = coalesce(CAST(:now AS timestamptz), now())
WHERE name = :name AND last_tick < CAST(:tick AS timestamptz)
  AND cron = :cron AND timezone = :timezone
RETURNING name;

-- name: schedule_list
-- The schedules named in :names (a JSON array) that the table holds.
SELECT name, cron, timezone, job_type, last_tick, last_run_at, last_job_id, updated_at
FROM equeue_schedules
WHERE name IN (SELECT jsonb_array_elements_text(CAST(CAST(:names AS text) AS jsonb)))
ORDER BY name;

-- name: schedule_register
-- Write a schedule's definition as a starting worker declares it, keeping how far it has run;
-- with another cron or time zone, it goes on from :last_tick (the new definition's latest
-- tick): the old definition's missed ticks are not the new one's to run.
INSERT INTO equeue_schedules AS s (
    name, cron, timezone, job_type, payload, last_tick, updated_at)
VALUES (:name, :cron, :timezone, :job_type, CAST(CAST(:payload AS text) AS jsonb),
        CAST(:last_tick AS timestamptz), coalesce(CAST(:now AS timestamptz), now()))
ON CONFLICT (name) DO UPDATE
SET cron = excluded.cron, timezone = excluded.timezone, job_type = excluded.job_type,
    payload = excluded.payload,
    last_tick = CASE WHEN s.cron = excluded.cron AND s.timezone = excluded.timezone
                     THEN s.last_tick ELSE greatest(s.last_tick, excluded.last_tick) END,
    updated_at = excluded.updated_at
RETURNING name, cron, timezone, job_type, last_tick, last_run_at, last_job_id, updated_at;

-- name: worker_deregister
-- Forget a worker that stopped cleanly.
DELETE FROM equeue_workers WHERE id = CAST(:id AS uuid);

-- name: worker_forget
-- Forget workers silent for :stalled_after seconds (their jobs were just rescued); never the
-- caller's own.
DELETE FROM equeue_workers
WHERE last_beat_at <= coalesce(CAST(:now AS timestamptz), now()) - make_interval(secs => :stalled_after)
  AND id <> CAST(:worker_id AS uuid)
RETURNING id;

-- name: worker_heartbeat
-- Prove a worker alive; no row back means it was declared lost.
UPDATE equeue_workers SET last_beat_at = coalesce(CAST(:now AS timestamptz), now()) WHERE id = CAST(:id AS uuid) RETURNING id;

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
SELECT CAST(:id AS uuid), :hostname, :pid, CAST(CAST(:queues AS text) AS jsonb), :concurrency,
       t.now, t.now
FROM (SELECT coalesce(CAST(:now AS timestamptz), now()) AS now) AS t
ON CONFLICT (id) DO UPDATE SET last_beat_at = excluded.last_beat_at;
