-- CreateIndex
CREATE INDEX "memory_units_user_id_ingestion_ts_idx" ON "memory_units"("user_id", "ingestion_ts" DESC);
