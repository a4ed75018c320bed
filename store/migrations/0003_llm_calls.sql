-- One row per HTTP attempt at an LLM (first tries, retries, repair requests and failures alike), so that cost,
-- latency and failure modes can be read per user, job, agent, model and prompt version, and so that the per-user
-- daily token budget has something to sum.
--
-- user_id deliberately has no foreign key to public.users: the row is written while a job runs, and a user deleted
-- mid-job (forget-user racing an ingestion) must not turn the LLM's real error into a foreign-key error. Deleting a
-- user therefore deletes these rows explicitly (store/llm_calls.py: delete_user_llm_calls).
CREATE TABLE runtime.llm_calls (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id           TEXT NOT NULL,
    job_id            TEXT,
    agent             TEXT NOT NULL,
    model             TEXT NOT NULL,
    endpoint          TEXT NOT NULL,
    prompt_name       TEXT NOT NULL,
    prompt_version    TEXT NOT NULL,
    purpose           TEXT NOT NULL CHECK (purpose IN ('answer', 'repair')),
    response_format   TEXT NOT NULL CHECK (response_format IN ('json_schema', 'json_object', 'prompt_only')),
    attempt           SMALLINT NOT NULL CHECK (attempt >= 1),
    prompt_tokens     INTEGER NOT NULL DEFAULT 0 CHECK (prompt_tokens >= 0),
    completion_tokens INTEGER NOT NULL DEFAULT 0 CHECK (completion_tokens >= 0),
    latency_ms        INTEGER NOT NULL CHECK (latency_ms >= 0),
    outcome           TEXT NOT NULL CHECK (outcome IN (
        'ok', 'invalid_json', 'schema_invalid', 'truncated', 'refused', 'rate_limited', 'quota_exceeded',
        'server_error', 'timeout', 'connection_error', 'unsupported_format', 'bad_request', 'auth_error', 'not_found'
    )),
    error             TEXT,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The budget query sums one user's tokens since UTC midnight; INCLUDE makes it an index-only scan.
CREATE INDEX llm_calls_user_created_idx ON runtime.llm_calls (user_id, created_at)
    INCLUDE (prompt_tokens, completion_tokens);
