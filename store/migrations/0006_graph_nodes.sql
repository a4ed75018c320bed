-- The embedded graph store (store/graph/postgres.py): the default when NEO4J_URI is unset.
-- Nodes live here; relationships reuse runtime.knowledge_edges (one edge table, not two). A row there is the truth
-- of a relationship; in_graph says whether the graph store has applied it, so deleting an entity, an edge or a user
-- from the graph clears the flag and never deletes the truth.
CREATE TABLE runtime.graph_nodes (
    label        TEXT NOT NULL CHECK (label IN ('User', 'MemoryUnit', 'Concept', 'DerivedArtifact', 'Community')),
    node_key     TEXT NOT NULL,
    user_id      TEXT NOT NULL REFERENCES public.users (user_id) ON DELETE CASCADE,
    properties   JSONB NOT NULL DEFAULT '{}'::jsonb,
    content_hash TEXT,  -- NULL: a placeholder made by a relationship that arrived before its node
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT graph_nodes_pkey PRIMARY KEY (label, node_key)
);
CREATE INDEX graph_nodes_user_label_idx ON runtime.graph_nodes (user_id, label);

ALTER TABLE runtime.knowledge_edges
    DROP CONSTRAINT knowledge_edges_source_type_check,
    DROP CONSTRAINT knowledge_edges_target_type_check,
    ADD CONSTRAINT knowledge_edges_source_type_check
        CHECK (source_type IN ('MemoryUnit', 'Concept', 'DerivedArtifact', 'Community')),
    ADD CONSTRAINT knowledge_edges_target_type_check
        CHECK (target_type IN ('MemoryUnit', 'Concept', 'DerivedArtifact', 'Community')),
    ADD COLUMN in_graph BOOLEAN NOT NULL DEFAULT false;
