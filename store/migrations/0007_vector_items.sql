-- The embedded vector store (store/vector/pgvector.py): one row per vectorized entity, the seed's UserKnowledgeItem
-- shape in the runtime schema. Derived from the public tables through the outbox and rebuildable from them.
--
-- pgvector must be available on the server (pgserver ships it; managed Postgres offers it; otherwise ask for
-- `CREATE EXTENSION vector` once). It goes to the default schema like everywhere else pgvector is used.
CREATE EXTENSION IF NOT EXISTS vector;

-- `embedding` has no fixed dimension: a model change (the local 384-dimension model, a 1536-dimension endpoint)
-- needs no migration. Vectors of one model share one dimension; search only ever compares vectors of the current
-- model (embedding_model_version), and each dimension gets its own partial HNSW index over a cast expression
-- (below for 384; the adapter creates the one for another dimension on start-up, empty and so instant).
-- The key is the user plus the source entity, so a replayed upsert replaces and a user's rows never mix with
-- another's; the foreign key removes a user's vectors with the user and refuses vectors for a user that is gone.
CREATE TABLE runtime.vector_items (
    user_id                 TEXT NOT NULL REFERENCES public.users (user_id) ON DELETE CASCADE,
    source_entity_type      TEXT NOT NULL CHECK (source_entity_type IN ('MemoryUnit', 'Concept', 'DerivedArtifact')),
    source_entity_id        TEXT NOT NULL,
    title                   TEXT NOT NULL,
    text_content            TEXT NOT NULL,
    embedding_model_version TEXT NOT NULL,
    created_at              TIMESTAMPTZ NOT NULL,
    importance_score        DOUBLE PRECISION,
    tags                    TEXT[] NOT NULL DEFAULT '{}',
    content_hash            TEXT NOT NULL,
    embedding               vector NOT NULL,
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, source_entity_type, source_entity_id)
);

-- Exact search for users with few items, counts and fingerprints per user and model.
CREATE INDEX vector_items_user_model_idx ON runtime.vector_items (user_id, embedding_model_version);

CREATE INDEX vector_items_embedding_384_idx ON runtime.vector_items
    USING hnsw ((embedding::vector(384)) vector_cosine_ops) WHERE vector_dims(embedding) = 384;
