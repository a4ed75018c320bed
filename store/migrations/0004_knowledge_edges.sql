-- Relationships extracted by the agents (memory unit / concept → memory unit / concept).
-- Postgres is the truth for them; the graph store (Neo4j or the embedded Postgres graph) is rebuilt from here.
-- They live in the runtime schema because the Prisma schema (the web app's contract) has no model for them.
CREATE TABLE runtime.knowledge_edges (
    edge_id                TEXT PRIMARY KEY,
    user_id                TEXT NOT NULL REFERENCES public.users (user_id) ON DELETE CASCADE,
    source_id              TEXT NOT NULL,
    source_type            TEXT NOT NULL CHECK (source_type IN ('MemoryUnit', 'Concept')),
    target_id              TEXT NOT NULL,
    target_type            TEXT NOT NULL CHECK (target_type IN ('MemoryUnit', 'Concept')),
    relationship_type      TEXT NOT NULL,
    strength               DOUBLE PRECISION NOT NULL CHECK (strength >= 0 AND strength <= 1),
    description            TEXT,
    source_conversation_id TEXT,
    created_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT knowledge_edges_no_self_loop CHECK (source_id <> target_id),
    CONSTRAINT knowledge_edges_unique UNIQUE (user_id, source_id, relationship_type, target_id)
);
CREATE INDEX knowledge_edges_user_conversation_idx ON runtime.knowledge_edges (user_id, source_conversation_id);
CREATE INDEX knowledge_edges_user_target_idx ON runtime.knowledge_edges (user_id, target_id);
