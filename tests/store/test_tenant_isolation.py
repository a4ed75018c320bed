"""User B can neither read nor change user A's rows through any function of store.repos (DESIGN.md, invariant 3).

Users A and B each get a row in every table (tests/store/tenants.py). Then every public function of every
repository module is called with B's user id and A's row ids, as the table CASES says, and its answer is checked;
afterwards A's rows must be exactly as they were. The functions are found by introspection, so a new repository
function without a case here fails; the other store modules' functions that take a user id are the subject of
test_tenant_isolation_store.py, and test_every_store_function_with_a_user_id_has_a_case holds both together.
"""

from __future__ import annotations

import inspect
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from core.media import FailureCode, MediaFailure, MediaKind, MediaReading, ReadingMethod
from core.revisions import RevisionKind, RevisionSource
from core.vocabulary import EntityKind, NodeLabel
from store.postgres import Executor
from store.repos import (
    cards,
    communities,
    concepts,
    consumed_interactions,
    conversations,
    derived_artifacts,
    graph_projections,
    growth_events,
    interaction_logs,
    knowledge_edges,
    media_items,
    memory_revisions,
    memory_units,
    proactive_prompts,
    user_sessions,
    users,
)
from store.repos._base import NotFoundError
from store.repos.communities import CommunityRow
from store.repos.derived_artifacts import NewArtifact
from store.repos.proactive_prompts import NewPromptRow
from tests.store import test_tenant_isolation_store
from tests.store.tenants import (
    A_ONLY_DIMENSION,
    A_TOKENS,
    B_TOKENS,
    MOMENT,
    A,
    B,
    Case,
    equals,
    give_user_a_row_everywhere,
    is_none,
    no_trace_of_a,
    nothing_of_a,
    owned_by_b,
    revision_of,
    row_id,
    run_cases,
    snapshot,
    store_functions,
    taken,
    takes_a_user_id,
)

OWNERLESS = {
    "conversations.read_conversation_for_job",
    "media_items.read_media_for_job",
    "media_items.waiting_media_ids",
    "conversations.end_silent_conversations",
    "conversations.ended_conversation_ids",
    "conversations.awaits_ingestion",
    "user_sessions.delete_expired_sessions",
    "consumed_interactions.users_with_new_interactions",
}
"""The functions without a user id: a job's bare conversation id turned into the owner's data, and the sweeps,
which work across users by nature (each says so)."""
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)


def not_found(call: Any) -> Case:
    return Case(call, raises=NotFoundError)


async def _both_listings(db: Executor, a: Any) -> list[list[media_items.MediaItemRecord]]:
    """B's items by A's and B's ids, and all of B's items: B's own only, either way."""
    return [
        await media_items.list_media_items(db, B, [a.media, row_id(B, "media")]),
        await media_items.list_media_items(db, B),
    ]


def _reading() -> MediaReading:
    return MediaReading(
        text="overwritten?",
        method=ReadingMethod.TEXT,
        model=None,
        truncated=False,
        detected_type="text/plain",
        size_bytes=1,
        sha256="0",
        pages=None,
        at=MOMENT.isoformat(),
    )


def _failure() -> MediaFailure:
    return MediaFailure(code=FailureCode.MISSING, reason="x", at=MOMENT.isoformat())


CASES: dict[str, Case] = {
    # users: the user id is the row itself, so B's calls can only ever reach B's row
    "users.create_user": taken(lambda db, a: users.create_user(db, B + "-2", email=f"{A}@example.org")),
    "users.get_user": Case(lambda db, a: users.get_user(db, B), owned_by_b),
    "users.record_ingestion": Case(
        lambda db, a: users.record_ingestion(db, B, concepts_created=5, next_context={"x": 1}), is_none
    ),
    "users.lock_user": Case(lambda db, a: users.lock_user(db, B), equals(True)),
    "users.set_package_prompts": Case(
        lambda db, a: users.set_package_prompts(db, B, [{"prompt_id": a.prompt}]), equals(True)
    ),
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
            and {m.conversation_id for m in read.messages} == {row_id(A, "conv")}
            and {c.user_id for c in read.concepts} == {A}
        ),
    ),
    "conversations.count_attachment_wait": not_found(
        lambda db, a: conversations.count_attachment_wait(db, B, a.conversation)
    ),
    # media items: B cannot see, start, finish, fail or link A's attachment, nor link B's own to A's memory unit
    "media_items.insert_media_item": Case(
        lambda db, a: media_items.insert_media_item(db, B, kind=MediaKind.AUDIO, storage_url="x", media_id=a.media),
        equals(False),  # A's id exists: nothing written (ON CONFLICT DO NOTHING), A's row unchanged
    ),
    "media_items.list_media_items": Case(
        lambda db, a: _both_listings(db, a),
        lambda listings: all([item.media_id for item in items] == [row_id(B, "media")] for items in listings),
    ),
    "media_items.start_processing": Case(
        lambda db, a: media_items.start_processing(db, B, a.media, reprocess=True), equals(False)
    ),
    "media_items.mark_media_processed": Case(
        lambda db, a: media_items.mark_media_processed(db, B, a.media, _reading()), equals(False)
    ),
    "media_items.mark_media_failed": Case(
        lambda db, a: media_items.mark_media_failed(db, B, a.media, _failure()), equals(False)
    ),
    "media_items.link_memory_units": Case(
        lambda db, a: media_items.link_memory_units(
            db, B, {a.media: row_id(B, "mu"), row_id(B, "media"): a.memory_unit}, replacing=[a.memory_unit]
        ),
        equals(0),
    ),
    "media_items.read_media_for_job": Case(
        # the item comes with its owner: everything after it is scoped to that owner
        lambda db, a: media_items.read_media_for_job(db, a.media),
        lambda item: item is not None and item.user_id == A,
    ),
    "media_items.waiting_media_ids": Case(
        lambda db, a: media_items.waiting_media_ids(db, limit=10), lambda ids: isinstance(ids, list)
    ),
    # memory units
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
        equals([concepts.EnsuredConcept(row_id(B, "concept"), created=False)]),
    ),
    "concepts.list_concepts": Case(lambda db, a: concepts.list_concepts(db, B, status=None), nothing_of_a),
    # growth events
    "growth_events.growth_by_dimension": Case(
        lambda db, a: growth_events.growth_by_dimension(db, B), lambda dims: A_ONLY_DIMENSION not in dims
    ),
    "growth_events.insert_growth_events": Case(
        # B's event about A's memory unit is B's row; A's event id is not overwritten (ON CONFLICT DO NOTHING)
        lambda db, a: growth_events.insert_growth_events(
            db,
            B,
            [
                growth_events.NewGrowthEvent(
                    entity_id=a.memory_unit, entity_type="MemoryUnit", dim_key="know_self", delta=0.1, source="test"
                ),
                growth_events.NewGrowthEvent(
                    event_id=a.growth_event, entity_id="x", entity_type="Concept", dim_key="x", delta=9, source="t"
                ),
            ],
        ),
        equals(1),
    ),
    "growth_events.repoint_entity": Case(
        lambda db, a: growth_events.repoint_entity(db, B, row_id(B, "concept"), [a.concept]), is_none
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
    "cards.list_cards": Case(lambda db, a: cards.list_cards(db, B), nothing_of_a),
    "cards.delete_cards_for_entities": Case(
        lambda db, a: cards.delete_cards_for_entities(db, B, [a.concept, a.card]), equals(0)
    ),
    # knowledge edges: the same endpoints under B's id are B's edge, A's strength stays
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
                    relationship_type="IS_ABOUT",
                    strength=1.0,
                    description="overwritten?",
                    source_conversation_id=None,
                )
            ],
        ),
        is_none,
    ),
    "knowledge_edges.delete_edges_from_conversation": Case(
        lambda db, a: knowledge_edges.delete_edges_from_conversation(db, B, a.conversation), equals(0)
    ),
    # derived artifacts
    "derived_artifacts.list_derived_artifacts": Case(
        lambda db, a: derived_artifacts.list_derived_artifacts(db, B), nothing_of_a
    ),
    "derived_artifacts.drop_memory_unit_sources": Case(
        lambda db, a: derived_artifacts.drop_memory_unit_sources(db, B, [a.memory_unit]), equals([])
    ),
    # proactive prompts
    "proactive_prompts.list_proactive_prompts": Case(
        lambda db, a: proactive_prompts.list_proactive_prompts(db, B), nothing_of_a
    ),
    # communities
    "communities.list_communities": Case(lambda db, a: communities.list_communities(db, B), nothing_of_a),
    # graph projections
    "graph_projections.latest_graph_projection": Case(
        lambda db, a: graph_projections.latest_graph_projection(db, B), owned_by_b
    ),
    # the statements an insight's merge and communities make
    "users.record_insight": Case(
        lambda db, a: users.record_insight(db, B, memory_profile={}, knowledge_graph_schema={}, next_context=None),
        is_none,
    ),
    "concepts.existing_concept_ids": Case(
        lambda db, a: concepts.existing_concept_ids(db, B, [a.concept, row_id(B, "concept")]),
        equals({row_id(B, "concept")}),
    ),
    "concepts.lock_active_concept": Case(lambda db, a: concepts.lock_active_concept(db, B, a.concept), is_none),
    "concepts.mark_merged": Case(
        lambda db, a: concepts.mark_merged(db, B, row_id(B, "concept"), [a.concept], at=MOMENT), equals([])
    ),
    "concepts.absorb": Case(lambda db, a: concepts.absorb(db, B, a.concept, aliases=["x"], at=MOMENT), is_none),
    "concepts.set_salience": Case(lambda db, a: concepts.set_salience(db, B, {a.concept: 0.99}), equals([])),
    "concepts.regroup": Case(lambda db, a: concepts.regroup(db, B, {a.concept: a.community}, at=MOMENT), no_trace_of_a),
    "memory_units.existing_memory_unit_ids": Case(
        lambda db, a: memory_units.existing_memory_unit_ids(db, B, [a.memory_unit]), equals(set())
    ),
    "knowledge_edges.repoint_edges": Case(
        # only B's own row naming A's ids (the upsert_edges case wrote it) moves; A's edge stays where it is
        lambda db, a: knowledge_edges.repoint_edges(db, B, row_id(B, "concept"), [a.concept]),
        lambda result: result == (1, {(NodeLabel.MEMORY_UNIT, row_id(A, "mu"))}),
    ),
    "cards.move_concept_cards": Case(
        lambda db, a: cards.move_concept_cards(db, B, row_id(B, "concept"), [a.concept], display={}), is_none
    ),
    "derived_artifacts.insert_artifacts": Case(
        # A's artifact id is not overwritten, and B's new artifact may not cite A's rows
        lambda db, a: derived_artifacts.insert_artifacts(
            db,
            B,
            [
                NewArtifact(
                    artifact_id=a.artifact, artifact_type="x", title="x", content_narrative=None, content_data={}
                ),
                NewArtifact(
                    artifact_id=f"{B}-new",
                    artifact_type="x",
                    title="x",
                    content_narrative=None,
                    content_data=None,
                    source_memory_unit_id=a.memory_unit,
                    source_concept_id=a.concept,
                ),
            ],
            generated_by="test",
        ),
        lambda made: (
            [(r.artifact_id, r.source_memory_unit_id, r.source_concept_id) for r in made] == [(f"{B}-new", None, None)]
        ),
    ),
    "derived_artifacts.concepts_with_artifact": Case(
        lambda db, a: derived_artifacts.concepts_with_artifact(db, B, "trophy", [a.concept]), equals(set())
    ),
    "derived_artifacts.artifact_exists": Case(
        lambda db, a: derived_artifacts.artifact_exists(db, B, a.artifact), equals(False)
    ),
    "derived_artifacts.repoint_concept_sources": Case(
        lambda db, a: derived_artifacts.repoint_concept_sources(db, B, row_id(B, "concept"), [a.concept]), equals([])
    ),
    "communities.insert_communities": Case(
        # A's community id is not overwritten; a new community of B's never lists A's concept
        lambda db, a: communities.insert_communities(
            db,
            B,
            [
                CommunityRow(community_id=a.community, name="x", description=None, members=[], metadata={}),
                CommunityRow(community_id=f"{B}-new", name="x", description=None, members=[a.concept], metadata={}),
            ],
            detection_method=None,
            at=MOMENT,
        ),
        is_none,
    ),
    "communities.update_communities": Case(
        lambda db, a: communities.update_communities(
            db,
            B,
            [CommunityRow(community_id=a.community, name="x", description=None, members=[], metadata={})],
            detection_method=None,
            at=MOMENT,
        ),
        is_none,
    ),
    "communities.repoint_members": Case(
        lambda db, a: communities.repoint_members(db, B, row_id(B, "concept"), [a.concept]), no_trace_of_a
    ),
    "communities.delete_communities": Case(
        lambda db, a: communities.delete_communities(db, B, [a.community]), equals(0)
    ),
    "proactive_prompts.insert_prompts": Case(
        lambda db, a: proactive_prompts.insert_prompts(
            db, B, [NewPromptRow(prompt_id=a.prompt, prompt_text="x", source_agent="x", priority=1, metadata={})]
        ),
        is_none,
    ),
    "proactive_prompts.expire_pending": Case(
        lambda db, a: proactive_prompts.expire_pending(db, B, created_before=FAR_FUTURE, now=MOMENT),
        equals(1),  # B's own
    ),
    "proactive_prompts.deliverable": Case(
        lambda db, a: proactive_prompts.deliverable(db, B, now=MOMENT, limit=10), no_trace_of_a
    ),
    "proactive_prompts.mark_delivered": Case(
        lambda db, a: proactive_prompts.mark_delivered(db, B, a.prompt, at=MOMENT), equals(False)
    ),
    "proactive_prompts.pending_texts": Case(lambda db, a: proactive_prompts.pending_texts(db, B), no_trace_of_a),
    "proactive_prompts.run_wrote_prompts": Case(
        lambda db, a: proactive_prompts.run_wrote_prompts(db, B, "daily:1"),
        equals(True),  # B's own prompt
    ),
    "graph_projections.insert_graph_projection": Case(
        lambda db, a: graph_projections.insert_graph_projection(db, B, a.projection, {}), equals(False)
    ),
    "graph_projections.graph_projection_exists": Case(
        lambda db, a: graph_projections.graph_projection_exists(db, B, a.projection), equals(False)
    ),
    # revisions (memory history) and the statements that revise memory
    "cards.refresh_display": Case(
        # B's own card about A's unit id (the ensure_card case made it) changes; A's card does not
        lambda db, a: cards.refresh_display(db, B, "MemoryUnit", {a.memory_unit: {"title": "x"}}),
        equals(1),
    ),
    "concepts.lock_concepts": Case(lambda db, a: concepts.lock_concepts(db, B, [a.concept]), equals([])),
    "concepts.set_descriptions": Case(
        lambda db, a: concepts.set_descriptions(db, B, {a.concept: "overwritten?"}, at=MOMENT), equals(0)
    ),
    "memory_units.lock_memory_units": Case(
        lambda db, a: memory_units.lock_memory_units(db, B, [a.memory_unit]), equals([])
    ),
    "memory_units.revise_memory_units": Case(
        lambda db, a: memory_units.revise_memory_units(
            db,
            B,
            [
                memory_units.RevisedMemoryUnit(
                    muid=a.memory_unit,
                    title="x",
                    content="overwritten?",
                    creation_ts=MOMENT,
                    importance_score=1,
                    sentiment_score=0,
                    source_conversation_ids=[row_id(B, "conv")],
                )
            ],
        ),
        equals(0),
    ),
    "memory_revisions.upsert_revisions": Case(
        # B's revision of A's unit is B's own row under B's own id (ids derive from the user): A's stays as it was
        lambda db, a: memory_revisions.upsert_revisions(db, B, [_b_revision_of(a.memory_unit)]),
        lambda ids: ids == [_b_revision_of(row_id(A, "mu")).revision_id(B)] and revision_of(A) not in ids,
    ),
    "memory_revisions.revisions_from_conversation": Case(
        lambda db, a: memory_revisions.revisions_from_conversation(db, B, a.conversation), nothing_of_a
    ),
    "memory_revisions.revisions_of": Case(
        lambda db, a: memory_revisions.revisions_of(db, B, [a.memory_unit]), nothing_of_a
    ),
    "memory_revisions.list_revisions": Case(
        lambda db, a: memory_revisions.list_revisions(db, B, entity_id=a.memory_unit), nothing_of_a
    ),
    "memory_revisions.forgotten_ids": Case(
        lambda db, a: memory_revisions.forgotten_ids(db, B, [a.memory_unit]), equals(set())
    ),
    "memory_revisions.delete_revisions": Case(
        lambda db, a: memory_revisions.delete_revisions(db, B, [revision_of(A)]), equals([])
    ),
    "memory_revisions.delete_history": Case(
        # only B's own revision naming A's unit (the upsert case wrote it) goes
        lambda db, a: memory_revisions.delete_history(db, B, [a.memory_unit]),
        lambda ids: revision_of(A) not in ids and len(ids) == 1,
    ),
    "growth_events.delete_growth_events_about": Case(
        # B's own event about A's unit (the insert_growth_events case wrote it) goes, A's stays
        lambda db, a: growth_events.delete_growth_events_about(db, B, [a.memory_unit]),
        equals(1),
    ),
    "knowledge_edges.delete_edges_touching": Case(
        # B's own edge from A's unit id (written by the upsert case, repointed to B's concept) goes, A's stays
        lambda db, a: knowledge_edges.delete_edges_touching(db, B, [a.memory_unit]),
        equals([("Concept", row_id(B, "concept"))]),
    ),
    # the user's corrections (interaction_logs, read; runtime.consumed_interactions, written)
    "consumed_interactions.claim_interactions": Case(
        lambda db, a: consumed_interactions.claim_interactions(db, B, "job-b", ["correction"], limit=10),
        lambda batch: nothing_of_a(batch) and [i.interaction_id for i in batch] == [row_id(B, "correction")],
    ),
    "interaction_logs.insert_interactions": Case(
        # A's interaction id given to B's row: A's row is neither overwritten nor taken over
        lambda db, a: interaction_logs.insert_interactions(
            db,
            B,
            [
                interaction_logs.NewInteraction(
                    interaction_id=a.correction, interaction_type="correction", timestamp=MOMENT, content_text="x"
                )
            ],
        ),
        equals(0),
    ),
    "interaction_logs.existing_interaction_ids": Case(
        lambda db, a: interaction_logs.existing_interaction_ids(db, B, [a.correction, a.interaction]), equals(set())
    ),
    "consumed_interactions.lock_pending": Case(
        lambda db, a: consumed_interactions.lock_pending(db, B, [a.correction]), equals(set())
    ),
    "consumed_interactions.settle_interactions": Case(
        lambda db, a: consumed_interactions.settle_interactions(db, B, {a.correction: ("applied", "x")}, at=MOMENT),
        equals(0),
    ),
    "consumed_interactions.fail_pending": Case(
        lambda db, a: consumed_interactions.fail_pending(db, B, "x", at=MOMENT),
        equals(1),  # B's own
    ),
    # the sweeps work across users (OWNERLESS): each one's own conditions, never a user's data to another user
    "conversations.end_silent_conversations": Case(
        lambda db, a: conversations.end_silent_conversations(db, timeout_minutes=10**7, limit=10), equals([])
    ),
    "conversations.ended_conversation_ids": Case(
        lambda db, a: conversations.ended_conversation_ids(db, limit=10), lambda ids: isinstance(ids, list)
    ),
    "conversations.awaits_ingestion": Case(  # the sweep's check of a conversation it listed: a yes or no, no rows
        lambda db, a: conversations.awaits_ingestion(db, a.conversation), lambda waits: isinstance(waits, bool)
    ),
    "consumed_interactions.users_with_new_interactions": Case(
        # A's correction is pending (B's was failed above): the sweep names A, never with A's rows
        lambda db, a: consumed_interactions.users_with_new_interactions(db, ["correction"], limit=10),
        equals([A]),
    ),
    "user_sessions.delete_expired_sessions": Case(
        # both users' sessions expired in 2026-03: the sweep deletes B's and A's alike, so it runs on a copy
        lambda db, a: _expire_only_b(db),
        equals(1),
    ),
}


def _b_revision_of(muid: str) -> memory_revisions.NewRevision:
    return memory_revisions.NewRevision(
        entity_type=EntityKind.MEMORY_UNIT,
        entity_id=muid,
        kind=RevisionKind.CORRECTED,
        source=RevisionSource(conversation_id=row_id(B, "conv")),
        after={"content": "overwritten?"},
    )


async def _expire_only_b(db: Executor) -> int:
    """The expired-session sweep with A's session kept alive meanwhile: it must delete B's (expired) session only."""
    await db.execute("UPDATE user_sessions SET expires_at = expires_at + interval '100 years' WHERE user_id = $1", A)
    try:
        return await user_sessions.delete_expired_sessions(db)
    finally:
        await db.execute(
            "UPDATE user_sessions SET expires_at = expires_at - interval '100 years' WHERE user_id = $1", A
        )


def repository_functions() -> dict[str, Any]:
    return {name.removeprefix("repos."): f for name, f in store_functions().items() if name.startswith("repos.")}


def test_every_repository_function_has_a_case() -> None:
    functions = repository_functions()
    assert sorted(set(functions) - set(CASES)) == [], "add a case for every new repository function"
    assert sorted(set(CASES) - set(functions)) == [], "a case for a function that no longer exists"


def test_every_store_function_with_a_user_id_has_a_case() -> None:
    """Issue 18: the isolation check covers every store function that takes a user id (as a parameter or inside
    a cycle or an agent's result), not only the repositories."""
    others = {name for name, f in store_functions().items() if not name.startswith("repos.") and takes_a_user_id(f)}
    covered = set(test_tenant_isolation_store.CASES)
    assert sorted(others - covered) == [], "add a case in test_tenant_isolation_store.py"
    assert sorted(covered - others) == [], "a case for a function that no longer takes a user id"


def test_every_function_takes_db_then_user_id() -> None:
    for name, function in repository_functions().items():
        params = list(inspect.signature(function).parameters)
        if name in OWNERLESS:
            assert "user_id" not in params, name
            continue
        assert params[:2] == ["db", "user_id"], f"{name}{params}"


async def test_user_b_can_neither_read_nor_change_user_a_rows(pool: asyncpg.Pool) -> None:
    a_rows = await give_user_a_row_everywhere(pool, A, A_ONLY_DIMENSION, A_TOKENS)
    await give_user_a_row_everywhere(pool, B, "know_self", B_TOKENS)
    before = await snapshot(pool, A)
    assert all(before[t] for t in before if not t.startswith("runtime.graph") and "vector" not in t), before.keys()

    assert await run_cases(CASES, pool, a_rows) == []
    assert await snapshot(pool, A) == before, "a call with B's user id changed one of A's rows"


@pytest.mark.parametrize("name", sorted(OWNERLESS))
def test_the_ownerless_exceptions_say_why(name: str) -> None:
    function = repository_functions()[name]
    doc = function.__doc__ or ""
    assert "without a user id" in doc or "every user" in doc, name
