-- Two more ways an LLM call can end, so every call that reached the model is recorded (the daily token budget and
-- the cost are summed from this table):
-- 'check_failed': the answer arrived but the agent's check of it raised instead of returning problems (a defect in
--                 the agent; the job is dead with that message, and the answer was neither used nor sent back);
-- 'cancelled':    the call was cut off by its task being cancelled (the job's timeout, a worker shutting down).
ALTER TABLE runtime.llm_calls DROP CONSTRAINT llm_calls_outcome_check;
ALTER TABLE runtime.llm_calls ADD CONSTRAINT llm_calls_outcome_check CHECK (outcome IN (
    'ok', 'invalid_json', 'schema_invalid', 'truncated', 'refused', 'rate_limited', 'quota_exceeded',
    'server_error', 'timeout', 'connection_error', 'unsupported_format', 'bad_request', 'auth_error', 'not_found',
    'check_failed', 'cancelled'
));
