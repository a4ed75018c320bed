-- CreateTable
CREATE TABLE "memory_revisions" (
    "revision_id" TEXT NOT NULL,
    "user_id" TEXT NOT NULL,
    "entity_type" TEXT NOT NULL,
    "entity_id" TEXT NOT NULL,
    "kind" TEXT NOT NULL,
    "before" JSONB,
    "after" JSONB,
    "source_conversation_id" TEXT,
    "source_interaction_id" TEXT,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "memory_revisions_pkey" PRIMARY KEY ("revision_id")
);

-- CreateIndex
CREATE INDEX "memory_revisions_user_id_entity_id_created_at_idx" ON "memory_revisions"("user_id", "entity_id", "created_at");

-- CreateIndex
CREATE INDEX "memory_revisions_source_conversation_id_idx" ON "memory_revisions"("source_conversation_id");

-- CreateIndex
CREATE INDEX "memory_revisions_source_interaction_id_idx" ON "memory_revisions"("source_interaction_id");

-- AddForeignKey
ALTER TABLE "memory_revisions" ADD CONSTRAINT "memory_revisions_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users"("user_id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "memory_revisions" ADD CONSTRAINT "memory_revisions_source_conversation_id_fkey" FOREIGN KEY ("source_conversation_id") REFERENCES "conversations"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "memory_revisions" ADD CONSTRAINT "memory_revisions_source_interaction_id_fkey" FOREIGN KEY ("source_interaction_id") REFERENCES "interaction_logs"("interaction_id") ON DELETE SET NULL ON UPDATE CASCADE;
