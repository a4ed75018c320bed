-- CreateTable
CREATE TABLE "users" (
    "user_id" TEXT NOT NULL,
    "email" TEXT NOT NULL,
    "hashed_password" TEXT,
    "name" TEXT,
    "region" TEXT NOT NULL DEFAULT 'us',
    "timezone" TEXT DEFAULT 'UTC',
    "language_preference" TEXT DEFAULT 'en',
    "profile_picture_url" TEXT,
    "account_status" TEXT NOT NULL DEFAULT 'active',
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_active_at" TIMESTAMP(3),
    "memory_profile" JSONB,
    "knowledge_graph_schema" JSONB,
    "next_conversation_context_package" JSONB,
    "last_cycle_started_at" TIMESTAMP(3),
    "concepts_created_in_cycle" INTEGER NOT NULL DEFAULT 0,
    "preferences" JSONB,

    CONSTRAINT "users_pkey" PRIMARY KEY ("user_id")
);

-- CreateTable
CREATE TABLE "user_sessions" (
    "session_id" TEXT NOT NULL,
    "user_id" TEXT NOT NULL,
    "device_info" JSONB,
    "ip_address" TEXT,
    "user_agent" TEXT,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "expires_at" TIMESTAMP(3) NOT NULL,
    "last_active_at" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "user_sessions_pkey" PRIMARY KEY ("session_id")
);

-- CreateTable
CREATE TABLE "conversations" (
    "id" TEXT NOT NULL,
    "user_id" TEXT NOT NULL,
    "title" TEXT,
    "start_time" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "ended_at" TIMESTAMP(3),
    "status" TEXT NOT NULL DEFAULT 'active',
    "importance_score" DOUBLE PRECISION,
    "context_summary" TEXT,
    "metadata" JSONB,
    "source_card_id" TEXT,

    CONSTRAINT "conversations_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "conversation_messages" (
    "id" TEXT NOT NULL,
    "conversation_id" TEXT NOT NULL,
    "role" TEXT NOT NULL,
    "content" TEXT NOT NULL,
    "timestamp" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "llm_call_metadata" JSONB,
    "media_ids" TEXT[] DEFAULT ARRAY[]::TEXT[],
    "seq" BIGSERIAL NOT NULL,

    CONSTRAINT "conversation_messages_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "cards" (
    "card_id" TEXT NOT NULL,
    "user_id" TEXT NOT NULL,
    "card_type" TEXT NOT NULL,
    "source_entity_id" TEXT NOT NULL,
    "source_entity_type" TEXT NOT NULL,
    "status" TEXT NOT NULL DEFAULT 'active_canvas',
    "is_favorited" BOOLEAN NOT NULL DEFAULT false,
    "display_data" JSONB,
    "is_synced" BOOLEAN NOT NULL DEFAULT true,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "cards_pkey" PRIMARY KEY ("card_id")
);

-- CreateTable
CREATE TABLE "memory_units" (
    "muid" TEXT NOT NULL,
    "user_id" TEXT NOT NULL,
    "title" TEXT NOT NULL,
    "content" TEXT NOT NULL,
    "creation_ts" TIMESTAMP(3) NOT NULL,
    "ingestion_ts" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_modified_ts" TIMESTAMP(3) NOT NULL,
    "importance_score" DOUBLE PRECISION,
    "sentiment_score" DOUBLE PRECISION,
    "source_conversation_id" TEXT,
    "metadata" JSONB,

    CONSTRAINT "memory_units_pkey" PRIMARY KEY ("muid")
);

-- CreateTable
CREATE TABLE "concepts" (
    "concept_id" TEXT NOT NULL,
    "user_id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "type" TEXT NOT NULL,
    "description" TEXT,
    "status" TEXT NOT NULL DEFAULT 'active',
    "salience" DOUBLE PRECISION,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_updated_ts" TIMESTAMP(3) NOT NULL,
    "community_id" TEXT,
    "merged_into_concept_id" TEXT,
    "metadata" JSONB,

    CONSTRAINT "concepts_pkey" PRIMARY KEY ("concept_id")
);

-- CreateTable
CREATE TABLE "media_items" (
    "media_id" TEXT NOT NULL,
    "user_id" TEXT NOT NULL,
    "memory_unit_id" TEXT,
    "type" TEXT NOT NULL,
    "storage_url" TEXT NOT NULL,
    "filename" TEXT,
    "mime_type" TEXT,
    "size_bytes" INTEGER,
    "hash" TEXT,
    "processing_status" TEXT NOT NULL DEFAULT 'pending',
    "metadata" JSONB,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "media_items_pkey" PRIMARY KEY ("media_id")
);

-- CreateTable
CREATE TABLE "growth_events" (
    "event_id" TEXT NOT NULL,
    "user_id" TEXT NOT NULL,
    "entity_id" TEXT NOT NULL,
    "entity_type" TEXT NOT NULL,
    "dim_key" TEXT NOT NULL,
    "delta" DOUBLE PRECISION NOT NULL,
    "source" TEXT NOT NULL,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "details" JSONB,

    CONSTRAINT "growth_events_pkey" PRIMARY KEY ("event_id")
);

-- CreateTable
CREATE TABLE "user_challenges" (
    "user_challenge_id" TEXT NOT NULL,
    "user_id" TEXT NOT NULL,
    "challenge_template_id" TEXT NOT NULL,
    "status" TEXT NOT NULL DEFAULT 'active',
    "start_time" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "completion_time" TIMESTAMP(3),
    "progress_data" JSONB,

    CONSTRAINT "user_challenges_pkey" PRIMARY KEY ("user_challenge_id")
);

-- CreateTable
CREATE TABLE "proactive_prompts" (
    "prompt_id" TEXT NOT NULL,
    "user_id" TEXT NOT NULL,
    "prompt_text" TEXT NOT NULL,
    "source_agent" TEXT NOT NULL,
    "status" TEXT NOT NULL DEFAULT 'pending',
    "priority" INTEGER NOT NULL DEFAULT 5,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "delivered_at" TIMESTAMP(3),
    "metadata" JSONB,

    CONSTRAINT "proactive_prompts_pkey" PRIMARY KEY ("prompt_id")
);

-- CreateTable
CREATE TABLE "derived_artifacts" (
    "artifact_id" TEXT NOT NULL,
    "user_id" TEXT NOT NULL,
    "artifact_type" TEXT NOT NULL,
    "title" TEXT NOT NULL,
    "content_narrative" TEXT,
    "content_data" JSONB,
    "source_memory_unit_id" TEXT,
    "source_concept_id" TEXT,
    "generated_by_agent" TEXT,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "derived_artifacts_pkey" PRIMARY KEY ("artifact_id")
);

-- CreateTable
CREATE TABLE "communities" (
    "community_id" TEXT NOT NULL,
    "user_id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "description" TEXT,
    "core_concept_ids" TEXT[] DEFAULT ARRAY[]::TEXT[],
    "detection_method" TEXT,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_analyzed_ts" TIMESTAMP(3),
    "metadata" JSONB,

    CONSTRAINT "communities_pkey" PRIMARY KEY ("community_id")
);

-- CreateTable
CREATE TABLE "interaction_logs" (
    "interaction_id" TEXT NOT NULL,
    "user_id" TEXT NOT NULL,
    "timestamp" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "interaction_type" TEXT NOT NULL,
    "target_entity_id" TEXT,
    "target_entity_type" TEXT,
    "content_text" TEXT,
    "content_structured" JSONB,
    "metadata" JSONB,

    CONSTRAINT "interaction_logs_pkey" PRIMARY KEY ("interaction_id")
);

-- CreateTable
CREATE TABLE "user_graph_projections" (
    "projection_id" TEXT NOT NULL,
    "user_id" TEXT NOT NULL,
    "status" TEXT NOT NULL DEFAULT 'completed',
    "projection_data" JSONB NOT NULL,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "user_graph_projections_pkey" PRIMARY KEY ("projection_id")
);

-- CreateIndex
CREATE UNIQUE INDEX "users_email_key" ON "users"("email");

-- CreateIndex
CREATE INDEX "user_sessions_user_id_idx" ON "user_sessions"("user_id");

-- CreateIndex
CREATE INDEX "user_sessions_expires_at_idx" ON "user_sessions"("expires_at");

-- CreateIndex
CREATE INDEX "conversations_user_id_status_idx" ON "conversations"("user_id", "status");

-- CreateIndex
CREATE INDEX "conversation_messages_conversation_id_timestamp_idx" ON "conversation_messages"("conversation_id", "timestamp");

-- CreateIndex
CREATE INDEX "cards_user_id_status_idx" ON "cards"("user_id", "status");

-- CreateIndex
CREATE INDEX "cards_source_entity_id_source_entity_type_idx" ON "cards"("source_entity_id", "source_entity_type");

-- CreateIndex
CREATE INDEX "memory_units_user_id_creation_ts_idx" ON "memory_units"("user_id", "creation_ts" DESC);

-- CreateIndex
CREATE UNIQUE INDEX "concepts_user_id_name_type_key" ON "concepts"("user_id", "name", "type");

-- CreateIndex
CREATE UNIQUE INDEX "media_items_hash_key" ON "media_items"("hash");

-- CreateIndex
CREATE INDEX "growth_events_user_id_entity_id_entity_type_idx" ON "growth_events"("user_id", "entity_id", "entity_type");

-- CreateIndex
CREATE INDEX "growth_events_user_id_dim_key_idx" ON "growth_events"("user_id", "dim_key");

-- CreateIndex
CREATE INDEX "user_challenges_user_id_status_idx" ON "user_challenges"("user_id", "status");

-- CreateIndex
CREATE INDEX "proactive_prompts_user_id_status_priority_idx" ON "proactive_prompts"("user_id", "status", "priority");

-- CreateIndex
CREATE INDEX "derived_artifacts_user_id_artifact_type_idx" ON "derived_artifacts"("user_id", "artifact_type");

-- CreateIndex
CREATE INDEX "communities_user_id_name_idx" ON "communities"("user_id", "name");

-- CreateIndex
CREATE INDEX "interaction_logs_user_id_timestamp_idx" ON "interaction_logs"("user_id", "timestamp");

-- CreateIndex
CREATE INDEX "interaction_logs_target_entity_id_target_entity_type_idx" ON "interaction_logs"("target_entity_id", "target_entity_type");

-- CreateIndex
CREATE INDEX "interaction_logs_user_id_interaction_type_idx" ON "interaction_logs"("user_id", "interaction_type");

-- CreateIndex
CREATE INDEX "user_graph_projections_user_id_created_at_idx" ON "user_graph_projections"("user_id", "created_at" DESC);

-- AddForeignKey
ALTER TABLE "user_sessions" ADD CONSTRAINT "user_sessions_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users"("user_id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "conversations" ADD CONSTRAINT "conversations_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users"("user_id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "conversations" ADD CONSTRAINT "conversations_source_card_id_fkey" FOREIGN KEY ("source_card_id") REFERENCES "cards"("card_id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "conversation_messages" ADD CONSTRAINT "conversation_messages_conversation_id_fkey" FOREIGN KEY ("conversation_id") REFERENCES "conversations"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "cards" ADD CONSTRAINT "cards_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users"("user_id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "memory_units" ADD CONSTRAINT "memory_units_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users"("user_id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "memory_units" ADD CONSTRAINT "memory_units_source_conversation_id_fkey" FOREIGN KEY ("source_conversation_id") REFERENCES "conversations"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "concepts" ADD CONSTRAINT "concepts_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users"("user_id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "concepts" ADD CONSTRAINT "concepts_community_id_fkey" FOREIGN KEY ("community_id") REFERENCES "communities"("community_id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "concepts" ADD CONSTRAINT "concepts_merged_into_concept_id_fkey" FOREIGN KEY ("merged_into_concept_id") REFERENCES "concepts"("concept_id") ON DELETE NO ACTION ON UPDATE NO ACTION;

-- AddForeignKey
ALTER TABLE "media_items" ADD CONSTRAINT "media_items_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users"("user_id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "media_items" ADD CONSTRAINT "media_items_memory_unit_id_fkey" FOREIGN KEY ("memory_unit_id") REFERENCES "memory_units"("muid") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "growth_events" ADD CONSTRAINT "growth_events_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users"("user_id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "user_challenges" ADD CONSTRAINT "user_challenges_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users"("user_id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "proactive_prompts" ADD CONSTRAINT "proactive_prompts_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users"("user_id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "derived_artifacts" ADD CONSTRAINT "derived_artifacts_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users"("user_id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "derived_artifacts" ADD CONSTRAINT "derived_artifacts_source_memory_unit_id_fkey" FOREIGN KEY ("source_memory_unit_id") REFERENCES "memory_units"("muid") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "derived_artifacts" ADD CONSTRAINT "derived_artifacts_source_concept_id_fkey" FOREIGN KEY ("source_concept_id") REFERENCES "concepts"("concept_id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "communities" ADD CONSTRAINT "communities_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users"("user_id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "interaction_logs" ADD CONSTRAINT "interaction_logs_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users"("user_id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "user_graph_projections" ADD CONSTRAINT "user_graph_projections_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users"("user_id") ON DELETE CASCADE ON UPDATE CASCADE;
