"""Forgetting a user everywhere, and proving it: the workflow behind `run.py forget-user` (the command only shows it).

It counts what Postgres, the graph store, the vector store and Redis hold of the user, deletes it, and counts again.
The order, and why, is store/forget.py's: Redis first (its keys are found from the conversation ids Postgres still
lists), then Postgres in one transaction that writes an outbox tombstone for each of their entities, then the graph
and vector stores, then the tombstones once both stores count zero. Redis is read and written through the queue's
one module (jobs/runtime/queue.py): the jobs naming the user, the dead letters kept in Redis, the kept outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis

from jobs.runtime import queue as redis_queue
from store import forget
from store.forget import Footprint
from store.graph.base import GraphStore
from store.vector.base import VectorStore


@dataclass
class Forgetting:
    """What the workflow knows of one user while it works: the ids naming them and their jobs."""

    user_id: str
    conversations: list[str]
    job_ids: list[str]

    @property
    def ids(self) -> frozenset[str]:
        return frozenset([self.user_id, *self.conversations])


@dataclass(frozen=True)
class Forgotten:
    before: Footprint
    after: Footprint | None
    """None on a dry run."""
    tombstones_dropped: int
    known: bool
    """Postgres has a users row for them, or something anywhere still names them (a forget that stopped half-way):
    False means the id names nobody, which the command reports as an unknown id."""


async def footprint(
    pool: asyncpg.Pool, redis: aioredis.Redis, graph: GraphStore, vector: VectorStore, who: Forgetting
) -> Footprint:
    jobs = await redis_queue.jobs_naming(redis, who.ids)
    unrecorded = [e for e in await redis_queue.unrecorded_dead(redis) if redis_queue.names_any(e.args, who.ids)]
    return Footprint(
        postgres=await forget.count_postgres(pool, who.user_id, who.conversations),
        graph=await forget.count_graph(graph, who.user_id),
        vector=await forget.count_vector(vector, who.user_id),
        redis={
            "turn contexts": await forget.count_turn_contexts(redis, who.conversations),
            "queued jobs": sum(not job.running for job in jobs),
            "running jobs": sum(job.running for job in jobs),
            "unrecorded dead letters": len(unrecorded),
            "job outcomes": len(await redis_queue.kept_outcomes(redis, who.job_ids)),
        },
    )


async def forget_user(
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    graph: GraphStore,
    vector: VectorStore,
    user_id: str,
    *,
    really: bool,
) -> Forgotten:
    """Count (and with `really`, delete, then count again) everything of `user_id`. Safe to run again after it
    stopped anywhere: every step deletes what is still there."""
    conversations = await forget.conversation_ids(pool, user_id)
    job_ids = await forget.job_ids_naming(pool, [user_id, *conversations])
    who = Forgetting(user_id, conversations, job_ids)
    before = await footprint(pool, redis, graph, vector, who)
    known = await pool.fetchval("SELECT 1 FROM users WHERE user_id = $1", user_id) is not None or before.total > 0
    if not really or not known:
        return Forgotten(before, None, 0, known)
    # 1. Redis, while Postgres still lists their conversations
    await forget.delete_turn_contexts(redis, conversations)
    for job in await redis_queue.jobs_naming(redis, who.ids):
        await redis_queue.remove_queued(redis, job.job_id, job.queue)  # a running one is left to finish
    unrecorded = [e for e in await redis_queue.unrecorded_dead(redis) if redis_queue.names_any(e.args, who.ids)]
    await redis_queue.drop_unrecorded(redis, unrecorded)
    await redis_queue.delete_kept_outcomes(redis, job_ids)
    # 2. Postgres, with tombstones in the outbox
    await forget.delete_postgres(pool, user_id, conversations)
    # 3. the stores
    await graph.delete_user(user_id)
    await vector.delete_user(user_id)
    after = await footprint(pool, redis, graph, vector, who)
    # 4. the tombstones, once the stores hold nothing of theirs
    dropped = 0
    if not sum(after.graph.values()) and not sum(after.vector.values()):
        dropped = await forget.drop_tombstones(pool, user_id)
        after.postgres = await forget.count_postgres(pool, user_id, conversations)
    return Forgotten(before, after, dropped, known)
