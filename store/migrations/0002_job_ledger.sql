-- The job ledger: one row per enqueued job run, updated in place as it moves through
--   queued -> running -> (failed -> running)* -> succeeded | dead
-- ('failed' = an attempt failed and a retry is scheduled; 'dead' = a dead letter: tries exhausted or a permanent
-- error). Redis holds the queue; this table is the history operators read (`run.py jobs …`) and the dead-letter
-- list `jobs retry` revives.
--
-- A job id (e.g. the dedupe key `ingest:{conversation_id}`) can run many times over its life, so the primary key is
-- a run number and only one run per job id may be active at once (the partial unique index): that index is also
-- what makes a second enqueue of the same dedupe key a no-op.
CREATE TABLE runtime.job_runs (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id       TEXT NOT NULL,
    job_name     TEXT NOT NULL,
    queue        TEXT NOT NULL,
    args         JSONB NOT NULL DEFAULT '{}'::jsonb,
    state        TEXT NOT NULL CHECK (state IN ('queued', 'running', 'failed', 'succeeded', 'dead')),
    attempt      SMALLINT NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    max_tries    SMALLINT NOT NULL CHECK (max_tries >= 1),
    error_class  TEXT,
    error        TEXT,
    result       JSONB,
    worker_id    TEXT,
    enqueued_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    run_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at   TIMESTAMPTZ,
    finished_at  TIMESTAMPTZ,
    duration_ms  INTEGER CHECK (duration_ms >= 0),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX job_runs_active_job_id_key ON runtime.job_runs (job_id)
    WHERE state IN ('queued', 'running', 'failed');

-- `jobs show ID`: every run of one job id, newest first.
CREATE INDEX job_runs_job_id_idx ON runtime.job_runs (job_id, id DESC);

-- `jobs failed` lists dead letters newest first; pruning deletes finished rows by age.
CREATE INDEX job_runs_dead_idx ON runtime.job_runs (finished_at DESC) WHERE state = 'dead';
CREATE INDEX job_runs_finished_at_idx ON runtime.job_runs (finished_at) WHERE finished_at IS NOT NULL;
