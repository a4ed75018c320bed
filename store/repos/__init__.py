"""Typed, user-scoped access to every table the agents read or write.

The tenant rule (DESIGN.md, invariant 3) lives here: every public function takes `(db, user_id, ...)` and every
statement it runs filters on that user id, UPDATE and DELETE included; messages are reached through their owning
conversation. The one documented exception is `conversations.read_conversation_for_job`, which turns the bare
conversation id a job receives into that conversation and its owner's data (all reached from the conversation
row's own user id); everything after it is scoped to that user id.

Functions take an `Executor` (a pool or a connection) so a job can run several of them in one transaction.
"""
