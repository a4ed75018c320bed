"""Two users with a row in every table Orrery reads or writes (public and runtime), the snapshot that proves one
user's calls left the other's rows alone, and the small vocabulary of checks the tenant-isolation cases use
(tests/store/test_tenant_isolation*.py)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

import store
from core.cycle import Cycle
from core.llm_records import CallOutcome, CallPurpose, LLMCallRecord, ResponseFormatMode
from core.media import MediaKind
from core.revisions import RevisionKind, RevisionSource
from core.vocabulary import EntityKind
from store import outbox, projection_refresh
from store.cycle_report_writes import report_id
from store.llm_calls import insert_llm_call
from store.postgres import Executor
from store.repos import cards, consumed_interactions, conversations, media_items, memory_revisions, users
from store.repos._base import Record
from store.repos.conversations import MessageRecord
from store.repos.memory_revisions import NewRevision
from store.sync import user_refs
from tests.store import testrows

A, B = "user-a", "user-b"
MOMENT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
A_ONLY_DIMENSION = "show_world"
A_TOKENS, B_TOKENS = 1000, 7
"""The tokens each user's one recorded LLM call used (a budget read with B's id must see B's only)."""

CARRIERS = {"Cycle", "CycleState", "InsightResult", "IngestionResult", "NewCycleReport"}
"""Parameter types that carry a user id inside them: a function taking one is "a store function that takes a user
id" as much as one with a `user_id` parameter."""


NAMESPACE = uuid.UUID("6a1c4f0e-2b7d-4d3e-9a51-0c8e7f6b5d42")
SUFFIXES = (
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
    "media",
    "correction",
)


def row_id(user_id: str, suffix: str) -> str:
    """The id of one of the user's rows: a UUID, as the vector store wants for the entities it holds."""
    return str(uuid.uuid5(NAMESPACE, f"{user_id}-{suffix}"))


class _Ids:
    def __init__(self, user_id: str) -> None:
        self.user_id = user_id

    def __getitem__(self, suffix: str) -> str:
        return row_id(self.user_id, suffix)


A_IDS = frozenset(row_id(A, suffix) for suffix in SUFFIXES)


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
    media: str
    correction: str


async def give_user_a_row_everywhere(db: Executor, user_id: str, dimension: str, tokens: int) -> Rows:
    """A row of `user_id` in every table (written through the production paths where Orrery writes the table), and
    outbox rows for all of it (the caller applies them to the derived stores)."""
    p = _Ids(user_id)
    await users.create_user(db, user_id, email=f"{user_id}@example.org", memory_profile={"of": user_id})
    await users.record_ingestion(db, user_id, concepts_created=1, next_context={"of": user_id})
    await conversations.create_conversation(db, user_id, conversation_id=p["conv"], start_time=MOMENT)
    await media_items.insert_media_item(  # an attachment of the message below, linked to the memory unit later
        db, user_id, kind=MediaKind.IMAGE, storage_url=f"file:///media/{user_id}.png", media_id=p["media"]
    )
    await conversations.add_message(
        db, user_id, p["conv"], role="user", content="secret", message_id=p["msg"], media_ids=[p["media"]]
    )
    await testrows.insert_memory_unit(
        db,
        user_id,
        title="t",
        content="secret",
        creation_ts=MOMENT,
        importance_score=5,
        sentiment_score=0,
        source_conversation_id=p["conv"],
        muid=p["mu"],
    )
    await testrows.create_concept(
        db, user_id, name="Lena", type="person", description="sister", normalized_name="lena", concept_id=p["concept"]
    )
    await testrows.insert_growth_event(
        db,
        user_id,
        entity_id=p["mu"],
        entity_type="MemoryUnit",
        dim_key=dimension,
        delta=0.5,
        source="ingestion",
        details={"source_conversation_id": p["conv"]},
        event_id=p["event"],
    )
    await media_items.link_memory_units(db, user_id, {p["media"]: p["mu"]})
    await cards.ensure_card(
        db,
        user_id,
        card_type="memory",
        source_entity_id=p["mu"],
        source_entity_type="MemoryUnit",
        display_data={},
        card_id=p["card"],
    )
    await testrows.upsert_edge(
        db,
        user_id,
        source_id=p["mu"],
        source_type="MemoryUnit",
        target_id=p["concept"],
        target_type="Concept",
        relationship_type="IS_ABOUT",
        strength=0.5,
        description="d",
        source_conversation_id=p["conv"],
        edge_id=p["edge"],
    )
    await testrows.create_derived_artifact(
        db,
        user_id,
        artifact_type="trophy",
        title="t",
        source_concept_id=p["concept"],
        source_memory_unit_id=p["mu"],
        content_data={"source_memory_unit_ids": [p["mu"]], "source_concept_ids": [p["concept"]]},
        artifact_id=p["artifact"],
    )
    await testrows.create_derived_artifact(  # a cycle report: its id is the cycle's own
        db, user_id, artifact_type="cycle_report", title="w", artifact_id=report_id(Cycle.of(user_id, MOMENT))
    )
    await testrows.create_proactive_prompt(
        db,
        user_id,
        prompt_text="?",
        source_agent="a",
        prompt_id=p["prompt"],
        metadata={"run_key": "daily:1", "expires_at": "2100-01-01T00:00:00+00:00"},
    )
    await testrows.create_community(
        db, user_id, name="Family", core_concept_ids=[p["concept"]], community_id=p["community"]
    )
    await db.execute(  # written by the web app; Orrery has no repository for it
        "INSERT INTO interaction_logs (interaction_id, user_id, interaction_type, target_entity_id) "
        "VALUES ($1, $2, 'card_opened', $3)",
        p["interaction"],
        user_id,
        p["card"],
    )
    await testrows.create_graph_projection(
        db, user_id, projection_data={"nodes": [user_id]}, projection_id=p["projection"]
    )
    await memory_revisions.upsert_revisions(db, user_id, [_revision(p["conv"], p["mu"])])
    await db.execute(  # a correction, written by the web app and claimed by a run of apply_corrections
        "INSERT INTO interaction_logs (interaction_id, user_id, interaction_type, target_entity_type, "
        "target_entity_id, content_text) VALUES ($1, $2, 'correction', 'MemoryUnit', $3, 'not quite')",
        p["correction"],
        user_id,
        p["mu"],
    )
    await consumed_interactions.claim_interactions(db, user_id, f"job-{user_id}", ["correction"], limit=10)
    await db.execute(  # written by the web app; Orrery only expires sessions (store/repos/user_sessions.py)
        "INSERT INTO user_sessions (session_id, user_id, expires_at, last_active_at) VALUES ($1, $2, $3, $3)",
        p["session"],
        user_id,
        MOMENT.replace(tzinfo=None),  # TIMESTAMP(3), in UTC as Prisma writes it
    )
    await db.execute(  # a run of the cycle chain, as the ledger records one
        "INSERT INTO runtime.job_runs (job_id, job_name, queue, args, state, max_tries, finished_at) "
        "VALUES ($1, 'insight', 'batch', $2, 'succeeded', 3, now())",
        Cycle.of(user_id, MOMENT).job_id("insight"),
        {"user_id": user_id, "cycle_start": MOMENT.isoformat()},
    )
    await insert_llm_call(db, _call(user_id, tokens))
    refs = await user_refs(db, user_id)
    await outbox.record_changes(db, user_id, [outbox.Change(ref.label, ref.entity_id) for ref in refs])
    await projection_refresh.request(db, [user_id], at=MOMENT)
    return Rows(*(row_id(user_id, suffix) for suffix in SUFFIXES))


def _revision(conversation_id: str, muid: str) -> NewRevision:
    return NewRevision(
        entity_type=EntityKind.MEMORY_UNIT,
        entity_id=muid,
        kind=RevisionKind.UPDATED,
        source=RevisionSource(conversation_id=conversation_id),
        before={"content": "older secret"},
        after={"content": "secret"},
    )


def revision_of(user_id: str) -> str:
    """The id of the user's one revision (of their memory unit, from their conversation)."""
    return _revision(row_id(user_id, "conv"), row_id(user_id, "mu")).revision_id(user_id)


def _call(user_id: str, tokens: int) -> LLMCallRecord:
    return LLMCallRecord(
        user_id=user_id,
        job_id=Cycle.of(user_id, MOMENT).job_id("insight"),
        agent="insight",
        model="m",
        endpoint="e",
        prompt_name="insight",
        prompt_version="v",
        purpose=CallPurpose.ANSWER,
        response_format=ResponseFormatMode.JSON_SCHEMA,
        attempt=1,
        prompt_tokens=tokens,
        completion_tokens=0,
        latency_ms=1,
        outcome=CallOutcome.OK,
        error=None,
    )


USER_TABLES = (
    "users",
    "user_sessions",
    "conversations",
    "media_items",
    "memory_units",
    "concepts",
    "growth_events",
    "cards",
    "derived_artifacts",
    "proactive_prompts",
    "communities",
    "interaction_logs",
    "user_graph_projections",
    "memory_revisions",
    "runtime.knowledge_edges",
    "runtime.consumed_interactions",
    "runtime.outbox",
    "runtime.llm_calls",
    "runtime.graph_nodes",
    "runtime.vector_items",
    "runtime.concept_name_vectors",
    "runtime.projection_refresh",
)


async def snapshot(db: Executor, user_id: str) -> dict[str, list[Any]]:
    """Every row of the user, as JSON, table by table (messages through their conversation, ledger runs through
    their arguments)."""
    rows: dict[str, list[Any]] = {}
    for table in USER_TABLES:
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
    rows["runtime.job_runs"] = [
        r[0]
        for r in await db.fetch(
            "SELECT to_jsonb(j) FROM runtime.job_runs j WHERE j.args->>'user_id' = $1 ORDER BY 1", user_id
        )
    ]
    return rows


# --- cases --------------------------------------------------------------------------------------------------------


Call = Callable[..., Awaitable[Any]]
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
        return result.conversation_id == row_id(B, "conv")
    if isinstance(result, Record):
        return getattr(result, "user_id", None) == B
    if isinstance(result, list | tuple):
        return all(nothing_of_a(item) for item in result)
    return not isinstance(result, dict)


def no_trace_of_a(result: Any) -> bool:
    """Nothing of A's anywhere in the answer: neither A's user id nor the id of any row of A's."""
    shown = repr(result)
    return A not in shown and not any(row in shown for row in A_IDS)


def owned_by_b(result: Any) -> bool:
    return result is not None and nothing_of_a(result)


def equals(expected: Any) -> Check:
    return lambda result: bool(result == expected)


def taken(call: Call) -> Case:
    """Reusing A's id or e-mail is refused by the primary or unique key: nothing of A's is overwritten."""
    return Case(call, raises=asyncpg.UniqueViolationError)


async def run_cases(cases: dict[str, Case], *args: Any) -> list[str]:
    """Call every case (in order) with `args`; one line per case that answered or raised otherwise than it must."""
    failures: list[str] = []
    for name, case in cases.items():
        try:
            result = await case.call(*args)
        except Exception as exc:
            if case.raises is None or not isinstance(exc, case.raises):
                failures.append(f"{name}: raised {type(exc).__name__}: {exc}")
            continue
        if case.raises is not None:
            failures.append(f"{name}: expected {case.raises.__name__}, returned {result!r}")
        elif case.check is not None and not case.check(result):
            failures.append(f"{name}: unexpected answer {result!r}")
    return failures


# --- which functions need a case ----------------------------------------------------------------------------------


def store_functions() -> dict[str, Callable[..., Any]]:
    """Every public coroutine function of every store module, by `module.function` (store. left out)."""
    found: dict[str, Callable[..., Any]] = {}
    for info in pkgutil.walk_packages(store.__path__, "store."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        module = importlib.import_module(info.name)
        for name, function in inspect.getmembers(module, inspect.iscoroutinefunction):
            if function.__module__ == module.__name__ and not name.startswith("_"):
                found[f"{info.name.removeprefix('store.')}.{name}"] = function
    return found


def takes_a_user_id(function: Callable[..., Any]) -> bool:
    parameters = inspect.signature(function).parameters.values()
    return any(p.name == "user_id" or str(p.annotation) in CARRIERS for p in parameters)
