-- A cycle is what was learned in it (core/cycle.CycleWindow: memory_units.ingestion_ts), so insight, proactive prompts
-- and the cycle report find the window's memory units by (user_id, ingestion_ts); with only the (user_id, creation_ts)
-- index they read every row of the user. Written as Prisma Migrate writes it; store/prisma/migrations/
-- 22_memory_units_ingestion_ts holds the same for the web app's Prisma Migrate. A plain CREATE INDEX (migrations run in
-- a transaction): on a table of millions of rows it holds writes to memory_units while it builds.

-- CreateIndex
CREATE INDEX "memory_units_user_id_ingestion_ts_idx" ON "memory_units"("user_id", "ingestion_ts" DESC);
