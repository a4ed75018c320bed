"""The two tables the dispatcher keeps besides the derived stores, on real Postgres: concept name vectors (nearest
active names of one type, one user's only) and each store's state (a failure holds the store's rows until its next
try, on a capped ladder; a success clears it; `sync run` makes everything due)."""

from __future__ import annotations

import math
import uuid

import asyncpg

from core.vocabulary import NodeLabel, normalize_concept_name
from store import concept_names, outbox
from store.repos import users
from tests.store import testrows


def unit(*values: float) -> list[float]:
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


async def concept(pool: asyncpg.Pool, user_id: str, name: str, kind: str) -> concept_names.ConceptName:
    record = await testrows.create_concept(
        pool, user_id, name=name, type=kind, description=None, normalized_name=normalize_concept_name(name)
    )
    return concept_names.concept_name(record)


async def test_the_nearest_names_are_the_users_own_active_concepts_of_the_same_type(pool: asyncpg.Pool) -> None:
    ana_id, bo_id = [
        (await users.create_user(pool, str(uuid.uuid4()), email=f"{uuid.uuid4().hex}@x.io")).user_id for _ in range(2)
    ]
    emma = await concept(pool, ana_id, "Emma", "Person")
    tom = await concept(pool, ana_id, "Tom", "person")
    porto = await concept(pool, ana_id, "Porto", "place")
    gone = await concept(pool, ana_id, "Emmy", "person")
    bos = await concept(pool, bo_id, "Emma", "person")
    assert (emma.text, emma.concept_type) == ("Emma (Person)", "person")
    await concept_names.upsert(
        pool,
        ana_id,
        "m1",
        [(emma, unit(1, 0, 0)), (tom, unit(0, 1, 0)), (porto, unit(1, 0, 0)), (gone, unit(1, 0.1, 0))],
    )
    await concept_names.upsert(pool, bo_id, "m1", [(bos, unit(1, 0, 0))])
    await pool.execute("UPDATE concepts SET status = 'merged' WHERE concept_id = $1", gone.concept_id)

    [near, places, other_model] = await concept_names.nearest(
        pool, ana_id, "m1", [(unit(1, 0.2, 0), " PERSON "), (unit(0, 0, 1), "place")], limit=5
    ) + await concept_names.nearest(pool, ana_id, "m2", [(unit(1, 0, 0), "person")], limit=5)
    assert [(m.concept_id, m.name, m.type) for m in near] == [
        (emma.concept_id, "Emma", "Person"),
        (tom.concept_id, "Tom", "person"),
    ]
    assert 0.97 < near[0].score < 0.99  # the cosine of (1, 0.2, 0) and (1, 0, 0)
    assert [m.concept_id for m in places] == [porto.concept_id] and abs(places[0].score) < 1e-6
    assert other_model == []  # vectors of another model are never compared
    assert [
        m.concept_id for m in (await concept_names.nearest(pool, bo_id, "m1", [(unit(1, 0, 0), "person")], limit=1))[0]
    ] == [bos.concept_id]

    await concept_names.upsert(pool, ana_id, "m1", [(emma, unit(0, 0, 1))])  # renamed or re-embedded: replaced
    await concept_names.delete(pool, ana_id, [tom.concept_id, bos.concept_id])  # Bo's id under Ana's: nothing
    [after] = await concept_names.nearest(pool, ana_id, "m1", [(unit(0, 0, 1), "person")], limit=5)
    assert [(m.concept_id, round(m.score, 6)) for m in after] == [(emma.concept_id, 1.0)]
    assert await pool.fetchval("SELECT count(*) FROM runtime.concept_name_vectors WHERE user_id = $1", bo_id) == 1


async def test_a_failing_store_holds_its_rows_until_its_next_try_and_a_success_clears_it(pool: asyncpg.Pool) -> None:
    user = await users.create_user(pool, str(uuid.uuid4()), email=f"{uuid.uuid4().hex}@x.io")
    async with pool.acquire() as conn, conn.transaction():
        await outbox.record_changes(conn, user.user_id, outbox.changes(NodeLabel.MEMORY_UNIT, ["m1", "m2", "m3"]))
    claimed = await outbox.claim(pool, "graph", limit=1, lease_s=120)
    assert len(claimed) == 1

    ladder = []
    for _ in range(5):
        state = await outbox.store_failed(
            pool, "graph", error="graph store unreachable", claimed=[claimed[0].id], retry_base_s=0.5, retry_cap_s=5
        )
        ladder.append(
            round(
                await pool.fetchval(
                    "SELECT extract(epoch FROM retry_at - now()) FROM runtime.sync_state WHERE store = 'graph'"
                )
            )
        )
    assert ladder == [0, 1, 2, 4, 5] or ladder == [1, 1, 2, 4, 5]  # 0.5, 1, 2, 4, then capped at 5 s
    assert state.failing and state.failures == 5 and state.last_error == "graph store unreachable"
    waiting = await pool.fetch("SELECT store, next_attempt_at - now() > interval '4 s' AS held FROM runtime.outbox")
    assert {(r["store"], r["held"]) for r in waiting} == {("graph", True), ("vector", False)}  # the other store: due
    assert await outbox.claim(pool, "graph", limit=10, lease_s=120) == []

    [graph, vector] = await outbox.backlog(pool)
    assert graph.store_failing and graph.store_failures == 5 and graph.failing_for_s is not None
    assert 4 <= (graph.retry_in_s or 0) <= 5 and graph.last_error == "graph store unreachable"
    assert not vector.store_failing and vector.rows == 3

    assert await outbox.retry_now(pool, "graph") == 3  # `sync run`: the held rows and the next try are due now
    assert len(await outbox.claim(pool, "graph", limit=10, lease_s=120)) == 3
    await outbox.store_answered(pool, "graph")
    state = await outbox.store_state(pool, "graph")
    assert not state.failing and state.failures == 0 and state.retry_at is None and state.last_ok_at is not None
    assert state.last_error == "graph store unreachable"  # kept, with its time, for `sync status`

    await outbox.note_error(pool, "vector", "user u1: refused")  # one user's trouble: shown, not the store failing
    assert not (await outbox.store_state(pool, "vector")).failing
    assert (await outbox.store_state(pool, "vector")).last_error == "user u1: refused"
