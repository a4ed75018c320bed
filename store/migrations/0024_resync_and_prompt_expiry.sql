-- What issue 20's migrations changed reaches the derived stores and the web app by itself (docs/operations.md,
-- "Upgrading"): no `run.py reconcile --repair` after an upgrade.
--
-- 1. 0020 rewrote derived_artifacts.artifact_type (a graph node property and a vector tag, store/vector/texts.py) and
--    0021 let the graph hold relationships derived from the rows (store/sync.py, outgoing_edges): a memory unit
--    AUTHORED_BY its User and MENTIONS the concepts an extracted relationship joins it to, a merged concept
--    MERGED_INTO its primary. Neither wrote outbox rows, so the stores kept what the earlier code had put there. One
--    outbox row per stale entity and store (store/outbox.py) has the dispatcher make the store match Postgres, as
--    after any write: every memory unit and merged concept for the graph, InsightAgent's artifacts (those 0020
--    rewrote, and any written since: their insight_kind) for both stores. Cards and growth events are in neither
--    store. Rows are ordered by user, so a dispatcher's batch of 500 holds few users (one store transaction each).
--    Harmless wherever the stores already match (a fresh database has no rows; an entity already right is upserted
--    as it is, an artifact's vector reused, not embedded again); bounded: one INSERT … SELECT, 1M memory units are
--    1M graph rows, which the dispatcher applies in the time docs/operations.md gives.
INSERT INTO runtime.outbox (store, user_id, label, entity_id)
SELECT stale.store, stale.user_id, stale.label, stale.entity_id
  FROM (SELECT 'graph' AS store, user_id, 'MemoryUnit' AS label, muid AS entity_id
          FROM public.memory_units
        UNION ALL
        SELECT 'graph', user_id, 'Concept', concept_id
          FROM public.concepts
         WHERE merged_into_concept_id IS NOT NULL AND merged_into_concept_id <> concept_id
        UNION ALL
        SELECT s.store, a.user_id, 'DerivedArtifact', a.artifact_id
          FROM public.derived_artifacts a CROSS JOIN (VALUES ('graph'), ('vector')) AS s(store)
         WHERE a.generated_by_agent = 'InsightAgent' OR a.content_data ? 'insight_kind') AS stale
 ORDER BY stale.user_id, stale.store, stale.label, stale.entity_id;

-- 2. A pending prompt written before prompts were delivered through the package has no metadata.expires_at, so it
--    was never offered (store/repos/proactive_prompts.py: deliverable) and only expired by its age. It gets the
--    expiry the code gives a new prompt, created_at + ORRERY_PROACTIVE_PROMPT_EXPIRY_DAYS, as the ISO text the code
--    writes. A migration cannot read a setting, so the setting's default (14 days) is used; the age rule the jobs
--    apply with the configured value still holds, so with a shorter setting such a prompt expires earlier, and with
--    a longer one it is offered 14 days. A readable value (an ISO instant with its offset) is kept; an unreadable one
--    is replaced; metadata that is neither an object nor null (no prompt Orrery wrote) is left alone. The prompt reaches the
--    package when the user's package is next written (the daily prompts run at their local morning, an ingestion).
CREATE OR REPLACE FUNCTION pg_temp.readable_instant(value TEXT) RETURNS BOOLEAN LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN value ~ '^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)$'
        AND value::timestamptz IS NOT NULL;
EXCEPTION WHEN others THEN
    RETURN false;
END
$$;
UPDATE public.proactive_prompts
   SET metadata = (CASE WHEN jsonb_typeof(metadata) = 'object' THEN metadata ELSE '{}'::jsonb END)
           || jsonb_build_object(
               'expires_at', to_char(created_at + interval '14 days', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'))
 WHERE status = 'pending'
   AND (metadata IS NULL OR jsonb_typeof(metadata) IN ('object', 'null'))
   AND NOT COALESCE(jsonb_typeof(metadata -> 'expires_at') = 'string'
                    AND pg_temp.readable_instant(metadata ->> 'expires_at'), false);
