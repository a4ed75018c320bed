-- The runs whose arguments name a user (the cycle chain's steps, proactive prompts, projections), newest first:
-- `run.py cycle show USER` finds a user's recent cycles through it without reading the whole ledger.
CREATE INDEX job_runs_user_id_idx ON runtime.job_runs ((args ->> 'user_id'), id DESC) WHERE args ? 'user_id';
