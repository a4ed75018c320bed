-- The values the web app reads follow the seed and one vocabulary (core/vocabulary.py, docs/contract.md):
-- growth_events.source names the agent that wrote the event, as insight's always did;
UPDATE growth_events SET source = 'IngestionAgent' WHERE source = 'ingestion';
-- derived_artifacts.artifact_type takes the seed's types: insight's finer kind moves into content_data.insight_kind,
-- a breakthrough (a growth milestone) becomes a trophy, the other kinds insight_summary;
UPDATE derived_artifacts
   SET content_data = jsonb_set(
           CASE WHEN jsonb_typeof(content_data) = 'object' THEN content_data ELSE '{}'::jsonb END,
           '{insight_kind}', to_jsonb(artifact_type)),
       artifact_type = CASE artifact_type WHEN 'breakthrough' THEN 'trophy' ELSE 'insight_summary' END
 WHERE artifact_type IN ('pattern', 'tension', 'breakthrough')
    OR (artifact_type = 'insight_summary' AND generated_by_agent = 'InsightAgent');
-- and their cards' card_type (and display_data) with them.
UPDATE cards c
   SET card_type = a.artifact_type,
       display_data = (CASE WHEN jsonb_typeof(c.display_data) = 'object' THEN c.display_data ELSE '{}'::jsonb END)
           || jsonb_build_object('artifact_type', a.artifact_type, 'insight_kind', a.content_data -> 'insight_kind')
  FROM derived_artifacts a
 WHERE c.source_entity_type = 'DerivedArtifact' AND c.source_entity_id = a.artifact_id AND c.user_id = a.user_id
   AND a.generated_by_agent = 'InsightAgent';
