"""Forgetting a user: count and delete what Postgres, the graph store, the vector store and the turn-context keys hold
about them. `run.py forget-user` (jobs/forget_user.py, shown by cli/forget.py) runs these steps in this order:

1. Redis: the turn contexts of their conversations (and the queued jobs naming them, through jobs/runtime/queue.py:
   those keys are the job runtime's). First, because their keys are found from the conversation ids, which step 2
   deletes.
2. Postgres, in one transaction: job ledger rows whose arguments name the user or one of their conversations, the
   user row (its foreign keys cascade to conversations, messages, memory and the embedded graph and vectors), every
   other row with their `user_id` in `public` and `runtime`, and an outbox row ("this entity changed") for every
   entity the derived stores may hold: tombstones.
3. The graph and vector stores: `delete_user` in each, which also removes what no Postgres row names any more
   (placeholders, strays).
4. The tombstones, once both stores count zero.

Why Postgres before the stores: Postgres is the truth, and deleting a user is a change like any other. If the run
stops after step 2, nothing is half-forgotten and unseen: the tombstones wait in the outbox (`sync status` shows
them) and the dispatcher deletes those entities from each store as it deletes any entity Postgres no longer has,
and running forget-user again (it needs only the user id) finishes steps 3 and 4. Stores first would leave a window
where the dispatcher or `reconcile --repair` rebuilds the stores from the Postgres rows still there. If it stops in
step 1, Postgres is untouched and a rerun does it all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg
import redis.asyncio as aioredis

from store import outbox
from store.context import turn_context_key
from store.graph.base import GraphStore
from store.postgres import Executor
from store.sync import user_refs
from store.vector.base import VectorStore

JOB_RUNS = "runtime.job_runs"
MESSAGES = "public.conversation_messages"
OUTBOX = "runtime.outbox"

_NAMES_ANY = (
    "EXISTS (SELECT 1 FROM jsonb_path_query(args, 'strict $.**') AS v "
    "WHERE jsonb_typeof(v) = 'string' AND v #>> '{}' = ANY($1::text[]))"
)
"""A ledger row whose arguments hold one of the ids as a text value, at any depth."""


@dataclass
class Footprint:
    """What is held about a user, per store and per table or kind (zeros included where they are known)."""

    postgres: dict[str, int] = field(default_factory=dict)
    graph: dict[str, int] = field(default_factory=dict)
    vector: dict[str, int] = field(default_factory=dict)
    redis: dict[str, int] = field(default_factory=dict)

    def stores(self) -> dict[str, dict[str, int]]:
        return {"postgres": self.postgres, "graph": self.graph, "vector": self.vector, "redis": self.redis}

    @property
    def total(self) -> int:
        return sum(sum(counts.values()) for counts in self.stores().values())


def _quoted(schema: str, table: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in (schema, table))


async def user_tables(db: Executor) -> list[str]:
    """Every table of `public` and `runtime` with a user_id column, as schema.table: found in the catalog, so a
    table added later is forgotten too."""
    rows = await db.fetch(
        "SELECT c.table_schema, c.table_name FROM information_schema.columns AS c "
        "JOIN information_schema.tables AS t USING (table_schema, table_name) "
        "WHERE c.column_name = 'user_id' AND c.table_schema IN ('public', 'runtime') AND t.table_type = 'BASE TABLE' "
        "ORDER BY c.table_schema, c.table_name"
    )
    return [f"{row['table_schema']}.{row['table_name']}" for row in rows]


async def conversation_ids(db: Executor, user_id: str) -> list[str]:
    return [r["id"] for r in await db.fetch("SELECT id FROM conversations WHERE user_id = $1 ORDER BY id", user_id)]


async def job_ids_naming(db: Executor, ids: Sequence[str]) -> list[str]:
    """Ids of the ledger's jobs whose arguments name one of `ids` (their outcome keys in Redis go with them)."""
    rows = await db.fetch(f"SELECT DISTINCT job_id FROM runtime.job_runs WHERE {_NAMES_ANY} ORDER BY job_id", list(ids))
    return [row["job_id"] for row in rows]


async def count_postgres(db: Executor, user_id: str, conversations: Sequence[str]) -> dict[str, int]:
    """Rows per table: those with the user's user_id, their conversations' messages, and ledger rows whose
    arguments name the user or one of those conversations."""
    counts: dict[str, int] = {}
    for name in await user_tables(db):
        schema, table = name.split(".", 1)
        counts[name] = await db.fetchval(f"SELECT count(*) FROM {_quoted(schema, table)} WHERE user_id = $1", user_id)
    counts[MESSAGES] = await db.fetchval(
        "SELECT count(*) FROM conversation_messages WHERE conversation_id = ANY($1::text[])", list(conversations)
    )
    counts[JOB_RUNS] = await db.fetchval(
        f"SELECT count(*) FROM runtime.job_runs WHERE {_NAMES_ANY}", [user_id, *conversations]
    )
    return dict(sorted(counts.items()))


async def count_graph(graph: GraphStore, user_id: str) -> dict[str, int]:
    counts = await graph.counts(user_id)
    return {"nodes": sum(counts.nodes.values()), "relationships": sum(counts.edges.values())}


async def count_vector(vector: VectorStore, user_id: str) -> dict[str, int]:
    return {f"items: {kind.value}": n for kind, n in (await vector.counts(user_id)).items()}


async def count_turn_contexts(redis: aioredis.Redis, conversations: Sequence[str]) -> int:
    keys = [turn_context_key(conversation_id) for conversation_id in conversations]
    return int(await redis.exists(*keys)) if keys else 0


async def delete_turn_contexts(redis: aioredis.Redis, conversations: Sequence[str]) -> int:
    keys = [turn_context_key(conversation_id) for conversation_id in conversations]
    return int(await redis.delete(*keys)) if keys else 0


async def delete_postgres(pool: asyncpg.Pool, user_id: str, conversations: Sequence[str]) -> int:
    """Step 2: in one transaction, the ledger rows naming the user or their conversations, the user row (cascading
    to every table with a foreign key to it), every other row with their user_id but the outbox's, and a tombstone
    outbox row for each entity the stores may hold. Returns the number of tombstones.

    The user's outbox rows are kept: once the entities are gone each of them is a tombstone too, so a rerun after
    a crash (when Postgres has no entity left to list) never deletes the rows that make the dispatcher clean up."""
    async with pool.acquire() as conn, conn.transaction():
        refs = await user_refs(conn, user_id)
        await conn.execute(f"DELETE FROM runtime.job_runs WHERE {_NAMES_ANY}", [user_id, *conversations])
        await conn.execute("DELETE FROM users WHERE user_id = $1", user_id)
        for name in await user_tables(conn):
            if name != OUTBOX:  # its rows now say "gone" too: they stay until the stores are empty (step 4)
                schema, table = name.split(".", 1)
                await conn.execute(f"DELETE FROM {_quoted(schema, table)} WHERE user_id = $1", user_id)
        return await outbox.record_changes(conn, user_id, [outbox.Change(ref.label, ref.entity_id) for ref in refs])


async def drop_tombstones(db: Executor, user_id: str) -> int:
    """Step 4: the user's outbox rows, once both stores hold nothing of theirs."""
    return await outbox.delete_user_rows(db, user_id)
