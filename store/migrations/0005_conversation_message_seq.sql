-- Message order that survives identical timestamps (store/schema.prisma: ConversationMessage.seq).
-- Prisma evaluates @default(now()) once per query, so a nested create of several messages gives them all one
-- `timestamp`, and random uuid ids cannot break the tie. A BIGSERIAL is assigned row by row in the order the rows
-- are written (the VALUES order of one multi-row INSERT, statement order across INSERTs), so readers order by
-- ("timestamp", "seq"). This is the statement Prisma Migrate generates for the field. Rows that existed before
-- this migration are numbered in physical order: their ties were never ordered and are not recoverable.

-- AlterTable
ALTER TABLE "conversation_messages" ADD COLUMN "seq" BIGSERIAL NOT NULL;
