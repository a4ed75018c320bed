-- Concept name vectors (store/concept_names.py): the embedding of each active concept's "name (type)", the existing
-- side of ingestion's similarity rule of concept deduplication. The rule compares names: the vector store holds the
-- name with the description embedded together, which keeps too few true merges to judge by
-- (bench/bench_dedupe.py), so names get their own vectors. The vector dispatcher keeps this table in step with
-- Postgres through the outbox (it embeds the name next to the concept's item), whatever the vector store is: a
-- user's concepts of one type are few, and are read exactly. Derived data: `run.py rebuild --vector` rewrites it.
CREATE TABLE runtime.concept_name_vectors (
    user_id                 TEXT NOT NULL REFERENCES public.users (user_id) ON DELETE CASCADE,
    concept_id              TEXT NOT NULL,
    concept_type            TEXT NOT NULL,
    name_text               TEXT NOT NULL,
    embedding_model_version TEXT NOT NULL,
    embedding               vector NOT NULL,
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, concept_id)
);
-- concept_type is normalized (core/vocabulary.py: normalize_concept_type): the rule only ever compares one type.
CREATE INDEX concept_name_vectors_type_idx
    ON runtime.concept_name_vectors (user_id, embedding_model_version, concept_type);

-- Every active concept goes through the vector dispatcher once, which writes its name vector (its item in the
-- vector store is upserted again, which changes nothing where its text has not changed).
INSERT INTO runtime.outbox (store, user_id, label, entity_id)
SELECT 'vector', user_id, 'Concept', concept_id FROM public.concepts WHERE status = 'active';
