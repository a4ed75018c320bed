-- The provider's prompt caching, recorded per call: `cached_tokens` is the part of `prompt_tokens` the provider served
-- from its cache (OpenAI's usage.prompt_tokens_details.cached_tokens, DeepSeek's prompt_cache_hit_tokens), billed at
-- the model's cached-input price. It is part of prompt_tokens, never more: the daily token budget keeps summing
-- prompt_tokens + completion_tokens, cached tokens included at full weight (docs/llm.md says why).
-- Rows written before this migration read 0 (no call recorded a cached count then).
ALTER TABLE runtime.llm_calls
    ADD COLUMN cached_tokens INTEGER NOT NULL DEFAULT 0,
    ADD CONSTRAINT llm_calls_cached_tokens_check CHECK (cached_tokens >= 0 AND cached_tokens <= prompt_tokens);

-- `run.py jobs show` lists a job's calls: by job id, without reading the whole table.
CREATE INDEX llm_calls_job_created_idx ON runtime.llm_calls (job_id, created_at) WHERE job_id IS NOT NULL;
