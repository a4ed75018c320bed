-- HIGHLIGHTS follows from the rows: it joins an artifact to the memory units and concepts its content_data cites
-- (store/sync.py, a structural relationship). What ingestion extracted under that name, a memory unit -> each concept
-- it is about, is IS_ABOUT from now on.
--
-- 1. The extracted rows change name (no CHECK names relationship types, and no row was IS_ABOUT before, so the unique
--    key (user_id, source_id, relationship_type, target_id) holds). In the embedded graph a row keeps its in_graph
--    flag: the graph holds it under its new name at once.
UPDATE runtime.knowledge_edges SET relationship_type = 'IS_ABOUT' WHERE relationship_type = 'HIGHLIGHTS';

-- 2. The relationship patterns insight keeps in users.knowledge_graph_schema use the vocabulary's word too.
UPDATE users
   SET knowledge_graph_schema = jsonb_set(knowledge_graph_schema, '{relationship_patterns}', (
           SELECT jsonb_agg(CASE WHEN p ->> 'relationship_type' = 'HIGHLIGHTS'
                                 THEN jsonb_set(p, '{relationship_type}', '"IS_ABOUT"') ELSE p END ORDER BY n)
             FROM jsonb_array_elements(knowledge_graph_schema -> 'relationship_patterns') WITH ORDINALITY AS t(p, n)))
 WHERE jsonb_typeof(knowledge_graph_schema -> 'relationship_patterns') = 'array'
   AND knowledge_graph_schema -> 'relationship_patterns' @> '[{"relationship_type": "HIGHLIGHTS"}]';

-- 3. The graph store converges with no operator step: the dispatcher re-projects every entity whose relationships
--    changed, the sources of the renamed rows (Neo4j still holds them as HIGHLIGHTS: the adapter deletes those when
--    it connects, store/graph/cypher.py RETIRED, and these rows write IS_ABOUT) and every artifact (its HIGHLIGHTS).
INSERT INTO runtime.outbox (store, user_id, label, entity_id)
SELECT DISTINCT 'graph', user_id, source_type, source_id FROM runtime.knowledge_edges WHERE relationship_type = 'IS_ABOUT'
UNION
SELECT 'graph', user_id, 'DerivedArtifact', artifact_id FROM derived_artifacts;
