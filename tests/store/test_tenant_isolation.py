"""User B can neither read nor change user A's rows through any function of store.repos (DESIGN.md, invariant 3).

Users A and B each get a row in every table. Then every public function of every repository module is called with
B's user id and A's row ids, as the table CASES says, and its answer is checked; afterwards A's rows must be exactly
as they were. The functions are found by introspection, so a new repository function without a case here fails.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

import store.repos
from store.postgres import Executor
from store.repos import (
    cards,
    communities,
    concepts,
    conversations,
    derived_artifacts,
    graph_projections,
    growth_events,
    knowledge_edges,
    memory_units,
    proactive_prompts,
    users,
)
from store.repos._base import NotFoundError, Record
from store.repos.conversations import MessageRecord

A, B = "user-a", "user-b"
MOMENT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
A_ONLY_DIMENSION = "show_world"
OWNERLESS = {"conversations.read_conversation_for_job"}
"""The one function without a user id: it turns a job's bare conversation id into the owner's data."""


@dataclass(frozen=True)
class Rows:
    """The ids of one user's rows, one per table."""

    conversation: str
    message: str
    memory_unit: str
    concept: str
    growth_event: str
    card: str
    edge: str
    artifact: str
    prompt: str
    community: str
    interaction: str
    projection: str
    session: str


async def give_user_a_row_everywhere(db: Executor, user_id: str, dimension: str) -> Rows:
    p = f"{user_id}-"
    await users.create_user(db, user_id, email=f"{user_id}@example.org", memory_profile={"of": user_id})
    await users.set_next_conversation_context(db, user_id, {"of": user_id})
    await conversations.create_conversation(db, user_id, conversation_id=p + "conv", start_time=MOMENT)
    await conversations.add_message(db, user_id, p + "conv", role="user", content="secret", message_id=p + "msg")
    await memory_units.insert_memory_unit(
        db,
        user_id,
        title="t",
        content="secret",
        creation_ts=MOMENT,
        importance_score=5,
        sentiment_score=0,
        source_conversation_id=p + "conv",
        muid=p + "mu",
    )
    await concepts.create_concept(
        db, user_id, name="Lena", type="person", description="sister", normalized_name="lena", concept_id=p + "concept"
    )
    await growth_events.insert_growth_event(
        db,
        user_id,
        entity_id=p + "mu",
        entity_type="MemoryUnit",
        dim_key=dimension,
        delta=0.5,
        source="ingestion",
        details={"source_conversation_id": p + "conv"},
        event_id=p + "event",
    )
    await cards.ensure_card(
        db,
        user_id,
        card_type="memory",
        source_entity_id=p + "mu",
        source_entity_type="MemoryUnit",
        display_data={},
        card_id=p + "card",
    )
    await knowledge_edges.upsert_edge(
        db,
        user_id,
        source_id=p + "mu",
        source_type="MemoryUnit",
        target_id=p + "concept",
        target_type="Concept",
        relationship_type="HIGHLIGHTS",
        strength=0.5,
        description="d",
        source_conversation_id=p + "conv",
        edge_id=p + "edge",
    )
    await derived_artifacts.create_derived_artifact(
        db,
        user_id,
        artifact_type="trophy",
        title="t",
        source_concept_id=p + "concept",
        source_memory_unit_id=p + "mu",
        content_data={"source_memory_unit_ids": [p + "mu"]},
        artifact_id=p + "artifact",
    )
    await proactive_prompts.create_proactive_prompt(
        db, user_id, prompt_text="?", source_agent="a", prompt_id=p + "prompt"
    )
    await communities.create_community(
        db, user_id, name="Family", core_concept_ids=[p + "concept"], community_id=p + "community"
    )
    await db.execute(  # written by the web app; Orrery has no repository for it
        "INSERT INTO interaction_logs (interaction_id, user_id, interaction_type, target_entity_id) "
        "VALUES ($1, $2, 'card_opened', $3)",
        p + "interaction",
        user_id,
        p + "card",
    )
    await graph_projections.create_graph_projection(
        db, user_id, projection_data={"nodes": [p]}, projection_id=p + "projection"
    )
    await db.execute(  # written by the web app; Orrery only expires sessions (store/sweeps.py)
        "INSERT INTO user_sessions (session_id, user_id, expires_at, last_active_at) VALUES ($1, $2, $3, $3)",
        p + "session",
        user_id,
        MOMENT.replace(tzinfo=None),  # TIMESTAMP(3), in UTC as Prisma writes it
    )
    return Rows(
        *(
            p + suffix
            for suffix in (
                "conv",
                "msg",
                "mu",
                "concept",
                "event",
                "card",
                "edge",
                "artifact",
                "prompt",
                "community",
                "interaction",
                "projection",
                "session",
            )
        )
    )


Call = Callable[[Executor, Rows], Awaitable[Any]]
Check = Callable[[Any], bool]


@dataclass(frozen=True)
class Case:
    call: Call
    check: Check | None = None  # None: the call must raise `raises`
    raises: type[BaseException] | None = None


def is_none(result: Any) -> bool:
    return result is None


def nothing_of_a(result: Any) -> bool:
    """Every record in the answer is B's (messages: of a conversation of B's)."""
    if isinstance(result, MessageRecord):
        return result.conversation_id.startswith(B)
    if isinstance(result, Record):
        return getattr(result, "user_id", None) == B
    if isinstance(result, list | tuple):
        return all(nothing_of_a(item) for item in result)
    return not isinstance(result, dict)


def owned_by_b(result: Any) -> bool:
    return result is not None and nothing_of_a(result)


def equals(expected: Any) -> Check:
    return lambda result: bool(result == expected)


def not_found(call: Call) -> Case:
    return Case(call, raises=NotFoundError)


def taken(call: Call) -> Case:
    """Reusing A's id or e-mail is refused by the primary or unique key: nothing of A's is overwritten."""
    return Case(call, raises=asyncpg.UniqueViolationError)


FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)

CASES: dict[str, Case] = {
    # users: the user id is the row itself, so B's calls can only ever reach B's row
    "users.create_user": taken(lambda db, a: users.create_user(db, B + "-2", email=f"{A}@example.org")),
    "users.get_user": Case(lambda db, a: users.get_user(db, B), owned_by_b),
    "users.set_next_conversation_context": Case(
        lambda db, a: users.set_next_conversation_context(db, B, {"x": 1}), is_none
    ),
    "users.record_ingestion": Case(
        lambda db, a: users.record_ingestion(db, B, concepts_created=5, next_context={"x": 1}), is_none
    ),
    "users.set_memory_profile": Case(lambda db, a: users.set_memory_profile(db, B, {"x": 1}), is_none),
    "users.start_cycle": Case(lambda db, a: users.start_cycle(db, B, FAR_FUTURE), is_none),
    # conversations and messages
    "conversations.create_conversation": taken(
        lambda db, a: conversations.create_conversation(db, B, conversation_id=a.conversation)
    ),
    "conversations.add_message": not_found(
        lambda db, a: conversations.add_message(db, B, a.conversation, role="user", content="injected")
    ),
    "conversations.get_conversation": Case(
        lambda db, a: conversations.get_conversation(db, B, a.conversation), is_none
    ),
    "conversations.lock_for_ingestion": Case(
        lambda db, a: conversations.lock_for_ingestion(db, B, a.conversation), is_none
    ),
    "conversations.list_messages": Case(lambda db, a: conversations.list_messages(db, B, a.conversation), equals([])),
    "conversations.list_conversations": Case(lambda db, a: conversations.list_conversations(db, B), nothing_of_a),
    "conversations.set_conversation_status": Case(
        lambda db, a: conversations.set_conversation_status(db, B, a.conversation, "processed"), equals(False)
    ),
    "conversations.mark_conversation_processed": not_found(
        lambda db, a: conversations.mark_conversation_processed(
            db, B, a.conversation, title="x", context_summary="x", importance_score=1
        )
    ),
    "conversations.mark_conversation_failed": not_found(
        lambda db, a: conversations.mark_conversation_failed(db, B, a.conversation, "x")
    ),
    "conversations.read_conversation_for_job": Case(
        # the owner's conversation comes with the owner's profile and concepts, never another user's
        lambda db, a: conversations.read_conversation_for_job(db, a.conversation, concept_limit=50),
        lambda read: (
            read is not None
            and read.conversation.user_id == A
            and read.memory_profile == {"of": A}
            and {m.conversation_id for m in read.messages} == {f"{A}-conv"}
            and {c.user_id for c in read.concepts} == {A}
        ),
    ),
    # memory units
    "memory_units.insert_memory_unit": not_found(
        lambda db, a: memory_units.insert_memory_unit(
            db,
            B,
            title="t",
            content="c",
            creation_ts=MOMENT,
            importance_score=1,
            sentiment_score=0,
            source_conversation_id=a.conversation,
        )
    ),
    "memory_units.insert_memory_units": not_found(
        lambda db, a: memory_units.insert_memory_units(
            db,
            B,
            [
                memory_units.NewMemoryUnit(
                    title="t",
                    content="c",
                    creation_ts=MOMENT,
                    importance_score=1,
                    sentiment_score=0,
                    source_conversation_id=a.conversation,
                )
            ],
        )
    ),
    "memory_units.get_memory_unit": Case(lambda db, a: memory_units.get_memory_unit(db, B, a.memory_unit), is_none),
    "memory_units.list_memory_units": Case(
        lambda db, a: memory_units.list_memory_units(db, B, source_conversation_id=a.conversation), equals([])
    ),
    "memory_units.memory_unit_ids_from_conversation": Case(
        lambda db, a: memory_units.memory_unit_ids_from_conversation(db, B, a.conversation), equals([])
    ),
    "memory_units.delete_memory_units": Case(
        lambda db, a: memory_units.delete_memory_units(db, B, [a.memory_unit]), equals([])
    ),
    # concepts: B's concept of the same name is B's own row, never A's
    "concepts.find_concept": Case(
        lambda db, a: concepts.find_concept(db, B, normalized_name="lena", type="person"),
        lambda found: found is not None and found.concept_id == f"{B}-concept",
    ),
    "concepts.create_concept": Case(
        lambda db, a: concepts.create_concept(
            db, B, name="Priya", type="person", description=None, normalized_name="priya", concept_id=a.concept
        ),
        raises=asyncpg.UniqueViolationError,
    ),
    "concepts.ensure_concepts": Case(
        # A's concept id handed in as the "existing" one resolves to B's own Lena, never to A's row
        lambda db, a: concepts.ensure_concepts(
            db,
            B,
            [
                concepts.NewConcept(
                    name="Lena", type="person", description="x", normalized_name="lena", existing_concept_id=a.concept
                )
            ],
        ),
        equals([concepts.EnsuredConcept(f"{B}-concept", created=False)]),
    ),
    "concepts.add_concept_alias": not_found(lambda db, a: concepts.add_concept_alias(db, B, a.concept, "x")),
    "concepts.get_concept": Case(lambda db, a: concepts.get_concept(db, B, a.concept), is_none),
    "concepts.list_concepts": Case(lambda db, a: concepts.list_concepts(db, B, status=None), nothing_of_a),
    "concepts.list_relevant_concepts": Case(lambda db, a: concepts.list_relevant_concepts(db, B), nothing_of_a),
    # growth events
    "growth_events.insert_growth_event": taken(
        lambda db, a: growth_events.insert_growth_event(
            db,
            B,
            entity_id=a.memory_unit,
            entity_type="MemoryUnit",
            dim_key="x",
            delta=1,
            source="s",
            details=None,
            event_id=a.growth_event,
        )
    ),
    "growth_events.list_growth_events": Case(
        lambda db, a: growth_events.list_growth_events(db, B, entity_id=a.memory_unit), equals([])
    ),
    "growth_events.growth_by_dimension": Case(
        lambda db, a: growth_events.growth_by_dimension(db, B), lambda dims: A_ONLY_DIMENSION not in dims
    ),
    "growth_events.insert_growth_events": Case(
        lambda db, a: growth_events.insert_growth_events(
            db,
            B,
            [
                growth_events.NewGrowthEvent(
                    entity_id=a.memory_unit, entity_type="MemoryUnit", dim_key="know_self", delta=0.1, source="test"
                )
            ],
        ),
        is_none,
    ),
    "growth_events.delete_growth_events_from_conversation": Case(
        lambda db, a: growth_events.delete_growth_events_from_conversation(db, B, a.conversation), equals(0)
    ),
    # cards: B asking for a card about A's entity gets a card of B's own, A's card is untouched
    "cards.ensure_card": Case(
        lambda db, a: cards.ensure_card(
            db,
            B,
            card_type="memory",
            source_entity_id=a.memory_unit,
            source_entity_type="MemoryUnit",
            display_data=None,
        ),
        lambda result: result[1] is True and owned_by_b(result[0]),
    ),
    "cards.ensure_cards": Case(
        lambda db, a: cards.ensure_cards(
            db, B, [cards.NewCard(card_type="memory", source_entity_id=a.memory_unit, source_entity_type="MemoryUnit")]
        ),
        # B's own card (0 when the ensure_card case above made it already); A's card is neither reused nor changed
        lambda created: created in (0, 1),
    ),
    "cards.insert_cards_for_new_entities": Case(
        # a card of B's own (the caller vouches the entity is new); A's cards are untouched
        lambda db, a: cards.insert_cards_for_new_entities(
            db, B, [cards.NewCard(card_type="memory", source_entity_id="b-new", source_entity_type="MemoryUnit")]
        ),
        equals(1),
    ),
    "cards.get_card": Case(lambda db, a: cards.get_card(db, B, a.card), is_none),
    "cards.list_cards": Case(lambda db, a: cards.list_cards(db, B), nothing_of_a),
    "cards.set_card_status": not_found(lambda db, a: cards.set_card_status(db, B, a.card, "completed")),
    "cards.delete_cards_for_entities": Case(
        lambda db, a: cards.delete_cards_for_entities(db, B, [a.concept, a.card]), equals(0)
    ),
    # knowledge edges: the same endpoints under B's id are B's edge, A's strength stays
    "knowledge_edges.upsert_edge": Case(
        lambda db, a: knowledge_edges.upsert_edge(
            db,
            B,
            source_id=a.memory_unit,
            source_type="MemoryUnit",
            target_id=a.concept,
            target_type="Concept",
            relationship_type="HIGHLIGHTS",
            strength=1.0,
            description="overwritten?",
            source_conversation_id=None,
        ),
        lambda edge: owned_by_b(edge) and edge.edge_id != f"{A}-edge",
    ),
    "knowledge_edges.upsert_edges": Case(
        lambda db, a: knowledge_edges.upsert_edges(
            db,
            B,
            [
                knowledge_edges.NewEdge(
                    source_id=a.memory_unit,
                    source_type="MemoryUnit",
                    target_id=a.concept,
                    target_type="Concept",
                    relationship_type="HIGHLIGHTS",
                    strength=1.0,
                    description="overwritten?",
                    source_conversation_id=None,
                )
            ],
        ),
        is_none,
    ),
    "knowledge_edges.list_edges": Case(
        lambda db, a: knowledge_edges.list_edges(db, B, source_conversation_id=a.conversation), equals([])
    ),
    "knowledge_edges.delete_edges_from_conversation": Case(
        lambda db, a: knowledge_edges.delete_edges_from_conversation(db, B, a.conversation), equals(0)
    ),
    "knowledge_edges.delete_edges_touching": Case(
        lambda db, a: knowledge_edges.delete_edges_touching(db, B, [f"{A}-none"]), equals(0)
    ),
    # derived artifacts
    "derived_artifacts.create_derived_artifact": not_found(
        lambda db, a: derived_artifacts.create_derived_artifact(
            db, B, artifact_type="trophy", title="t", source_memory_unit_id=a.memory_unit
        )
    ),
    "derived_artifacts.get_derived_artifact": Case(
        lambda db, a: derived_artifacts.get_derived_artifact(db, B, a.artifact), is_none
    ),
    "derived_artifacts.list_derived_artifacts": Case(
        lambda db, a: derived_artifacts.list_derived_artifacts(db, B), nothing_of_a
    ),
    "derived_artifacts.drop_memory_unit_sources": Case(
        lambda db, a: derived_artifacts.drop_memory_unit_sources(db, B, [a.memory_unit]), equals([])
    ),
    "derived_artifacts.delete_derived_artifact": Case(
        lambda db, a: derived_artifacts.delete_derived_artifact(db, B, a.artifact), equals(False)
    ),
    # proactive prompts
    "proactive_prompts.create_proactive_prompt": taken(
        lambda db, a: proactive_prompts.create_proactive_prompt(
            db, B, prompt_text="x", source_agent="x", prompt_id=a.prompt
        )
    ),
    "proactive_prompts.get_proactive_prompt": Case(
        lambda db, a: proactive_prompts.get_proactive_prompt(db, B, a.prompt), is_none
    ),
    "proactive_prompts.list_proactive_prompts": Case(
        lambda db, a: proactive_prompts.list_proactive_prompts(db, B), nothing_of_a
    ),
    "proactive_prompts.set_proactive_prompt_status": not_found(
        lambda db, a: proactive_prompts.set_proactive_prompt_status(db, B, a.prompt, "delivered", delivered_at=MOMENT)
    ),
    # communities
    "communities.create_community": not_found(
        lambda db, a: communities.create_community(db, B, name="x", core_concept_ids=[a.concept])
    ),
    "communities.get_community": Case(lambda db, a: communities.get_community(db, B, a.community), is_none),
    "communities.list_communities": Case(lambda db, a: communities.list_communities(db, B), nothing_of_a),
    "communities.update_community": not_found(lambda db, a: communities.update_community(db, B, a.community, name="x")),
    "communities.delete_community": Case(lambda db, a: communities.delete_community(db, B, a.community), equals(False)),
    # graph projections
    "graph_projections.create_graph_projection": taken(
        lambda db, a: graph_projections.create_graph_projection(db, B, projection_data={}, projection_id=a.projection)
    ),
    "graph_projections.get_graph_projection": Case(
        lambda db, a: graph_projections.get_graph_projection(db, B, a.projection), is_none
    ),
    "graph_projections.latest_graph_projection": Case(
        lambda db, a: graph_projections.latest_graph_projection(db, B), owned_by_b
    ),
    "graph_projections.list_graph_projections": Case(
        lambda db, a: graph_projections.list_graph_projections(db, B), nothing_of_a
    ),
    "graph_projections.set_graph_projection_status": not_found(
        lambda db, a: graph_projections.set_graph_projection_status(db, B, a.projection, "failed")
    ),
}


def public_repository_functions() -> dict[str, Callable[..., Any]]:
    found: dict[str, Callable[..., Any]] = {}
    for info in pkgutil.iter_modules(store.repos.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"store.repos.{info.name}")
        for name, function in inspect.getmembers(module, inspect.iscoroutinefunction):
            if function.__module__ == module.__name__ and not name.startswith("_"):
                found[f"{info.name}.{name}"] = function
    return found


def test_every_repository_function_has_a_case() -> None:
    functions = public_repository_functions()
    assert sorted(set(functions) - set(CASES)) == [], "add a case for every new repository function"
    assert sorted(set(CASES) - set(functions)) == [], "a case for a function that no longer exists"


def test_every_function_takes_db_then_user_id() -> None:
    for name, function in public_repository_functions().items():
        params = list(inspect.signature(function).parameters)
        if name in OWNERLESS:
            assert "user_id" not in params, name
            continue
        assert params[:2] == ["db", "user_id"], f"{name}{params}"


TABLES_WITH_USER_ID = (
    "users",
    "user_sessions",
    "conversations",
    "memory_units",
    "concepts",
    "growth_events",
    "cards",
    "derived_artifacts",
    "proactive_prompts",
    "communities",
    "interaction_logs",
    "user_graph_projections",
    "runtime.knowledge_edges",
)


async def snapshot(db: Executor, user_id: str) -> dict[str, list[Any]]:
    """Every row of the user, as JSON, table by table (messages through their conversation)."""
    rows: dict[str, list[Any]] = {}
    for table in TABLES_WITH_USER_ID:
        rows[table] = [
            r[0] for r in await db.fetch(f"SELECT to_jsonb(t) FROM {table} t WHERE user_id = $1 ORDER BY 1", user_id)
        ]
    rows["conversation_messages"] = [
        r[0]
        for r in await db.fetch(
            "SELECT to_jsonb(m) FROM conversation_messages m JOIN conversations c ON c.id = m.conversation_id "
            "WHERE c.user_id = $1 ORDER BY 1",
            user_id,
        )
    ]
    return rows


async def test_user_b_can_neither_read_nor_change_user_a_rows(pool: asyncpg.Pool) -> None:
    a_rows = await give_user_a_row_everywhere(pool, A, A_ONLY_DIMENSION)
    await give_user_a_row_everywhere(pool, B, "know_self")
    before = await snapshot(pool, A)
    assert all(before[table] for table in before), f"A lacks a row in {[t for t in before if not before[t]]}"

    failures: list[str] = []
    for name, case in CASES.items():
        try:
            result = await case.call(pool, a_rows)
        except Exception as exc:
            if case.raises is None or not isinstance(exc, case.raises):
                failures.append(f"{name}: raised {type(exc).__name__}: {exc}")
            continue
        if case.raises is not None:
            failures.append(f"{name}: expected {case.raises.__name__}, returned {result!r}")
        elif case.check is not None and not case.check(result):
            failures.append(f"{name}: unexpected answer {result!r}")
    assert failures == []
    assert await snapshot(pool, A) == before, "a call with B's user id changed one of A's rows"


@pytest.mark.parametrize("name", sorted(OWNERLESS))
def test_the_ownerless_exception_is_documented(name: str) -> None:
    function = public_repository_functions()[name]
    assert function.__doc__ is not None and "without a user id" in function.__doc__
