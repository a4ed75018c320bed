-- The embedded graph's relationships reach the User node too: AUTHORED_BY (MemoryUnit -> User) keeps the user from
-- being an isolated node (the V9 graph design); MERGED_INTO joins two concepts and needs nothing new here.
ALTER TABLE runtime.knowledge_edges
    DROP CONSTRAINT knowledge_edges_target_type_check,
    ADD CONSTRAINT knowledge_edges_target_type_check
        CHECK (target_type IN ('MemoryUnit', 'Concept', 'DerivedArtifact', 'Community', 'User'));
