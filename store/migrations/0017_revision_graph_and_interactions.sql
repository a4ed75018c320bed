-- The runtime side of memory history (0016 is the public side).
--
-- 1. The embedded graph holds each revision as a `Revision` node with a `REVISES` relationship to the memory unit or
--    concept it revised (store/graph/base.py), as Neo4j does; the outbox carries revisions to the stores.
ALTER TABLE runtime.outbox DROP CONSTRAINT outbox_label_check,
    ADD CONSTRAINT outbox_label_check
        CHECK (label IN ('User', 'MemoryUnit', 'Concept', 'DerivedArtifact', 'Community', 'Revision'));
ALTER TABLE runtime.graph_nodes DROP CONSTRAINT graph_nodes_label_check,
    ADD CONSTRAINT graph_nodes_label_check
        CHECK (label IN ('User', 'MemoryUnit', 'Concept', 'DerivedArtifact', 'Community', 'Revision'));
ALTER TABLE runtime.knowledge_edges
    DROP CONSTRAINT knowledge_edges_source_type_check,
    ADD CONSTRAINT knowledge_edges_source_type_check
        CHECK (source_type IN ('MemoryUnit', 'Concept', 'DerivedArtifact', 'Community', 'Revision'));

-- 2. What the corrections job made of each interaction_logs row the web app wrote (a correction, feedback on a
--    card, a reflection): Orrery never changes the web app's rows, so their state is kept here. A row is claimed
--    ('pending', with the job that took it) before the one LLM call of its user's batch, and settled ('applied',
--    'ignored', 'failed') in the transaction that writes the batch's revisions, so a rerun after a success finds
--    nothing to do (no second LLM call) and a rerun after a crash takes the same batch again. Rows go with their
--    interaction (the web app deleting it) and with their user (forget-user).
CREATE TABLE runtime.consumed_interactions (
    interaction_id TEXT PRIMARY KEY REFERENCES public.interaction_logs (interaction_id) ON DELETE CASCADE,
    user_id        TEXT NOT NULL REFERENCES public.users (user_id) ON DELETE CASCADE,
    state          TEXT NOT NULL CHECK (state IN ('pending', 'applied', 'ignored', 'failed')),
    job_id         TEXT,
    reason         TEXT,
    claimed_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    settled_at     TIMESTAMPTZ
);
CREATE INDEX consumed_interactions_user_state_idx ON runtime.consumed_interactions (user_id, state);
