-- What each stored vector was made from (store/vector/base.py: KnowledgeItem.embedding_hash, the sha256 of the text
-- embedded). The vector dispatcher reuses a stored vector whose text is the item's instead of embedding it again,
-- so a change that leaves the text alone (a concept's salience, the importance of the vector item) costs a write,
-- not an embedding. Rows written before this column are NULL: their next change is embedded once, as before.
ALTER TABLE runtime.vector_items ADD COLUMN embedding_hash TEXT;
