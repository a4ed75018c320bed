-- What each derived store's dispatcher knows about the store right now (store/outbox.py: StoreState), written as it
-- happens, so `run.py sync status` and the metrics show a store in trouble while it is in trouble, not once a batch
-- of rows has been given up on. failing_since/failures/retry_at describe the current run of store-level failures
-- (the store away, timing out, its embedder down) and are cleared by the next success; last_error is the latest
-- failure of any kind.
CREATE TABLE runtime.sync_state (
    store         TEXT PRIMARY KEY CHECK (store IN ('graph', 'vector')),
    failing_since TIMESTAMPTZ,
    failures      INTEGER NOT NULL DEFAULT 0,
    retry_at      TIMESTAMPTZ,
    last_error    TEXT,
    last_error_at TIMESTAMPTZ,
    last_ok_at    TIMESTAMPTZ
);
INSERT INTO runtime.sync_state (store) VALUES ('graph'), ('vector');
