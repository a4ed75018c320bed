-- `run.py jobs cancel`: a queued run an operator takes off the queue ends 'cancelled', a final state of its own (not
-- a dead letter: nothing failed, and `jobs failed` stays the list of what needs attention).
ALTER TABLE runtime.job_runs DROP CONSTRAINT job_runs_state_check;
ALTER TABLE runtime.job_runs ADD CONSTRAINT job_runs_state_check
    CHECK (state IN ('queued', 'running', 'failed', 'succeeded', 'dead', 'cancelled'));
