-- The transactional outbox (store/outbox.py): every transaction that changes an entity the graph or vector store
-- mirrors writes one row per store here, in the same transaction, so a commit can never be lost on its way to a
-- derived store. A row says "this entity of this user changed; make the store match Postgres": the dispatcher reads
-- the entity's current rows and upserts it (or deletes it, when it is gone), so rows are idempotent and the newest
-- state always wins. A row is deleted once its store has applied it; a store that is down keeps its rows (attempts,
-- next_attempt_at, last_error) and blocks nothing else.
CREATE TABLE runtime.outbox (
    id              BIGSERIAL PRIMARY KEY,
    store           TEXT NOT NULL CHECK (store IN ('graph', 'vector')),
    user_id         TEXT NOT NULL,
    label           TEXT NOT NULL CHECK (label IN ('User', 'MemoryUnit', 'Concept', 'DerivedArtifact', 'Community')),
    entity_id       TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error      TEXT
);
CREATE INDEX outbox_due_idx ON runtime.outbox (store, next_attempt_at, id);
CREATE INDEX outbox_entity_idx ON runtime.outbox (store, label, entity_id, id);
CREATE INDEX outbox_user_idx ON runtime.outbox (user_id);
