"""public.concepts: the user's people, places, values, goals…, deduplicated by normalized name and aliases.

Identity lives in `metadata = {"normalized_name": str, "aliases": [normalized names]}` (the names come from
core.vocabulary.normalize_concept_name). The database's unique key is the surface `(user_id, name, type)`, which
"Morning runs" and "morning runs" do not share, so creation takes an advisory lock per (user, type, normalized
name): concurrent ingestions of the same new concept produce one row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel

from store.postgres import Executor
from store.repos._base import (
    JsonObject,
    Record,
    UtcDatetime,
    Write,
    new_id,
    row_count,
    serialized,
    to_db,
    utc_now,
)

RELEVANCE_ORDER = "salience DESC NULLS LAST, last_updated_ts DESC, concept_id"
"""Which of a user's concepts an agent sees first: the most salient, then the most recently updated."""


class ConceptRecord(Record):
    concept_id: str
    user_id: str
    name: str
    type: str
    description: str | None
    status: str
    salience: float | None
    created_at: UtcDatetime
    last_updated_ts: UtcDatetime
    community_id: str | None
    merged_into_concept_id: str | None
    metadata: JsonObject

    @property
    def normalized_name(self) -> str | None:
        value = (self.metadata or {}).get("normalized_name")
        return value if isinstance(value, str) else None

    @property
    def aliases(self) -> list[str]:
        value = (self.metadata or {}).get("aliases")
        return [alias for alias in value if isinstance(alias, str)] if isinstance(value, list) else []


def _matches_name(concept: str, name: str) -> str:
    """SQL: the concept row `concept` has the normalized name `name` as its own or as an alias."""
    return (
        f"({concept}metadata->>'normalized_name' = {name} OR (jsonb_typeof({concept}metadata->'aliases') = 'array' "
        f"AND {concept}metadata->'aliases' ? {name}))"
    )


_MATCHES_NAME = _matches_name("", "$2")

_INSERT_CONFLICT = (
    "ON CONFLICT (user_id, name, type) DO UPDATE SET last_updated_ts = EXCLUDED.last_updated_ts, "
    "description = COALESCE(concepts.description, EXCLUDED.description), "
    "metadata = CASE WHEN jsonb_typeof(concepts.metadata) = 'object' "
    "AND concepts.metadata ? 'normalized_name' THEN concepts.metadata ELSE EXCLUDED.metadata END "
)
"""A racing or web-app row with the same surface name is the concept meant: keep its identity, fill its gaps."""


def _concept_lock(user_id: str, type: str, normalized_name: str) -> str:
    return f"concept:{user_id}:{type}:{normalized_name}"


class NewConcept(BaseModel):
    """One concept for `ensure_concepts`."""

    name: str
    type: str
    description: str | None
    normalized_name: str
    existing_concept_id: str | None = None  # the caller believes it is this concept (a model's handle)


@dataclass(frozen=True)
class EnsuredConcept:
    concept_id: str
    created: bool


async def ensure_concepts(db: Executor, user_id: str, wanted: Sequence[NewConcept]) -> list[EnsuredConcept]:
    """The concept meant by each of `wanted`, in order, creating the missing ones; reused ones are touched.

    Each resolves to: its `existing_concept_id` when that is one of the user's concepts, else the user's oldest
    active concept of its type whose normalized name or alias matches, else a new row (or the row of the same
    surface name, or that row's active successor when it was merged away). Two entries meaning the same concept get
    the same id; only the first counts as created. At most five round trips whatever the count (the locks, one
    lookup, merged successors when one found was merged, one insert, one touch), where creating them one by one took
    four each: an ingestion resolves several concepts, and this was the largest part of its write. Takes the same
    per-name advisory locks as `create_concept`, so the two never create twins.
    """
    if not wanted:
        return []
    keys = [_concept_lock(user_id, c.type, c.normalized_name) for c in wanted]
    async with serialized(db, keys) as conn:
        rows = await conn.fetch(
            "SELECT DISTINCT ON (d.i) d.i, c.concept_id, c.status "
            "FROM unnest($2::int[], $3::text[], $4::text[], $5::text[]) AS d(i, existing_id, type, normalized_name) "
            "JOIN concepts c ON c.user_id = $1 AND (c.concept_id = d.existing_id OR (c.type = d.type "
            f"AND c.status = 'active' AND {_matches_name('c.', 'd.normalized_name')})) "
            "ORDER BY d.i, c.concept_id IS NOT DISTINCT FROM d.existing_id DESC, c.created_at, c.concept_id",
            user_id,
            list(range(len(wanted))),
            [c.existing_concept_id for c in wanted],
            [c.type for c in wanted],
            [c.normalized_name for c in wanted],
        )
        found: dict[int, str] = {row["i"]: row["concept_id"] for row in rows}
        # only an existing_concept_id can name a merged concept (names match active ones): most batches have none
        successor = await _successors(conn, user_id, {row["concept_id"] for row in rows if row["status"] == "merged"})
        found = {index: successor.get(concept_id, concept_id) for index, concept_id in found.items()}
        now = to_db(utc_now())
        # one new row per (type, normalized name): "Morning runs" and "morning runs" in one batch are one concept
        missing: dict[tuple[str, str], NewConcept] = {}
        for index, concept in enumerate(wanted):
            if index not in found:
                missing.setdefault((concept.type, concept.normalized_name), concept)
        made = await _insert_missing(conn, user_id, list(missing.values()), now)
        results: list[EnsuredConcept] = []
        claimed: set[str] = set()
        for index, concept in enumerate(wanted):
            if index in found:
                results.append(EnsuredConcept(found[index], created=False))
                continue
            first = missing[(concept.type, concept.normalized_name)]
            ensured = made[(first.type, first.name)]
            first_use = ensured.concept_id not in claimed
            claimed.add(ensured.concept_id)
            results.append(EnsuredConcept(ensured.concept_id, created=ensured.created and first_use))
        touched = {r.concept_id: c.description for r, c in zip(results, wanted, strict=True) if not r.created}
        if touched:
            await conn.execute(
                "UPDATE concepts c SET description = COALESCE(NULLIF(btrim(c.description), ''), t.description, "
                "c.description), last_updated_ts = $2 FROM unnest($3::text[], $4::text[]) AS t(concept_id, "
                "description) WHERE c.user_id = $1 AND c.concept_id = t.concept_id",
                user_id,
                now,
                list(touched),
                list(touched.values()),
            )
    return results


MERGE_HOPS = 5
"""A concept merged into one that was merged in turn is followed this far (merges are rare; chains are short)."""


async def _successors(conn: Executor, user_id: str, concept_ids: set[str]) -> dict[str, str]:
    """id -> the active concept it was merged into, for those of `concept_ids` merged away: an answer can name a
    concept that a merge retired while its LLM call ran, and new links must go to the concept kept."""
    resolved: dict[str, str] = {}
    current = {concept_id: concept_id for concept_id in concept_ids}
    for _ in range(MERGE_HOPS if current else 0):
        rows = await conn.fetch(
            "SELECT concept_id, merged_into_concept_id FROM concepts WHERE user_id = $1 "
            "AND concept_id = ANY($2::text[]) AND status = 'merged' AND merged_into_concept_id IS NOT NULL",
            user_id,
            list(set(current.values())),
        )
        if not rows:
            break
        step = {row["concept_id"]: row["merged_into_concept_id"] for row in rows}
        current = {origin: step.get(now, now) for origin, now in current.items()}
        resolved.update({origin: now for origin, now in current.items() if now != origin})
    return resolved


async def _insert_missing(
    conn: Executor, user_id: str, missing: Sequence[NewConcept], now: datetime
) -> dict[tuple[str, str], EnsuredConcept]:
    """Insert the concepts no lookup found, one row per surface (type, name); keyed by that surface."""
    unique = list({(c.type, c.name): c for c in missing}.values())
    if not unique:
        return {}
    rows = await conn.fetch(
        "INSERT INTO concepts (concept_id, user_id, name, type, description, status, created_at, last_updated_ts, "
        "metadata) SELECT n.concept_id, $1, n.name, n.type, n.description, 'active', $2, $2, "
        "jsonb_build_object('normalized_name', n.normalized_name, 'aliases', '[]'::jsonb) "
        "FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) "
        f"AS n(concept_id, name, type, description, normalized_name) {_INSERT_CONFLICT}"
        "RETURNING concept_id, name, type, status, merged_into_concept_id, xmax = 0 AS inserted",
        user_id,
        now,
        [new_id() for _ in unique],
        [c.name for c in unique],
        [c.type for c in unique],
        [c.description for c in unique],
        [c.normalized_name for c in unique],
    )
    made = {(row["type"], row["name"]): EnsuredConcept(row["concept_id"], row["inserted"]) for row in rows}
    merged = {
        row["merged_into_concept_id"]: (row["type"], row["name"])
        for row in rows
        if row["status"] == "merged" and row["merged_into_concept_id"] is not None
    }
    if merged:  # the surface name belongs to a concept merged away: its active successor is the concept meant
        successors = await conn.fetch(
            "SELECT concept_id FROM concepts WHERE user_id = $1 AND concept_id = ANY($2::text[]) AND status = 'active'",
            user_id,
            list(merged),
        )
        for row in successors:
            made[merged[row["concept_id"]]] = EnsuredConcept(row["concept_id"], created=False)
    return made


async def list_concepts(db: Executor, user_id: str, *, status: str | None = "active") -> list[ConceptRecord]:
    """The user's concepts by name; every status when `status` is None."""
    rows = await db.fetch(
        "SELECT * FROM concepts WHERE user_id = $1 AND ($2::text IS NULL OR status = $2) ORDER BY name, type",
        user_id,
        status,
    )
    return [ConceptRecord.from_row(row) for row in rows]


async def existing_concept_ids(
    db: Executor, user_id: str, concept_ids: Iterable[str], *, active: bool = False
) -> set[str]:
    """Which of `concept_ids` are the user's concepts; with `active`, only those not merged or archived."""
    wanted = sorted(set(concept_ids))
    if not wanted:
        return set()
    rows = await db.fetch(
        "SELECT concept_id FROM concepts WHERE user_id = $1 AND concept_id = ANY($2::text[]) "
        "AND (NOT $3 OR status = 'active')",
        user_id,
        wanted,
        active,
    )
    return {row["concept_id"] for row in rows}


async def lock_active_concept(db: Executor, user_id: str, concept_id: str) -> ConceptRecord | None:
    """The user's active concept, its row locked until the transaction ends (a merge's primary)."""
    row = await db.fetchrow(
        "SELECT * FROM concepts WHERE user_id = $1 AND concept_id = $2 AND status = 'active' FOR UPDATE",
        user_id,
        concept_id,
    )
    return ConceptRecord.from_optional(row)


async def mark_merged(
    db: Executor, user_id: str, primary_id: str, secondary_ids: Sequence[str], *, at: datetime
) -> list[ConceptRecord]:
    """The user's active `secondary_ids` (never the primary) become `merged` into `primary_id` and leave their
    community; returns them as they were merged (none when all were merged already)."""
    rows = await db.fetch(
        "UPDATE concepts SET status = 'merged', merged_into_concept_id = $2, community_id = NULL, "
        "last_updated_ts = $4 WHERE user_id = $1 AND concept_id = ANY($3::text[]) AND concept_id <> $2 "
        "AND status = 'active' RETURNING *",
        user_id,
        primary_id,
        list(secondary_ids),
        to_db(at),
    )
    return [ConceptRecord.from_row(row) for row in rows]


async def absorb(db: Executor, user_id: str, concept_id: str, *, aliases: Sequence[str], at: datetime) -> None:
    """What a concept keeps of those merged into it: their names as its aliases (its salience is computed again
    from the relationships the merge moved to it: store/salience.py)."""
    await db.execute(
        "UPDATE concepts SET metadata = jsonb_set(CASE WHEN jsonb_typeof(metadata) = 'object' THEN metadata "
        "ELSE '{}'::jsonb END, '{aliases}', to_jsonb($3::text[])), last_updated_ts = $4 "
        "WHERE user_id = $1 AND concept_id = $2",
        user_id,
        concept_id,
        list(aliases),
        to_db(at),
    )


_SET_SALIENCE = (
    "UPDATE concepts c SET salience = v.salience FROM unnest($2::text[], $3::float8[]) AS v(concept_id, salience) "
    "WHERE c.user_id = $1 AND c.concept_id = v.concept_id AND c.salience IS DISTINCT FROM v.salience"
)


async def set_salience(db: Executor, user_id: str, values: Mapping[str, float]) -> list[str]:
    """Each of the user's concepts in `values` (id → salience) takes its value; returns those whose salience changed.

    `last_updated_ts` stays: salience is derived (core/salience.py), not an edit of the concept, and the recency
    that orders concepts of equal salience must not be reset by every recomputation."""
    if not values:
        return []
    rows = await db.fetch(_SET_SALIENCE + " RETURNING c.concept_id", user_id, list(values), list(values.values()))
    return sorted(row["concept_id"] for row in rows)


def setting_salience(user_id: str, values: Mapping[str, float]) -> Write | None:
    """`set_salience` as a Write, to send with others, for a caller that needs no answer (the count of changed)."""
    if not values:
        return None
    return Write(_SET_SALIENCE, (user_id, list(values), list(values.values())))


async def regroup(db: Executor, user_id: str, members: Mapping[str, str], *, at: datetime) -> list[str]:
    """Every concept of the user in `members` joins its community, every other one that had a community (or is
    active) leaves it; returns the concepts whose community changed."""
    rows = await db.fetch(
        "UPDATE concepts c SET community_id = m.community_id, last_updated_ts = $2 "
        "FROM (SELECT concept_id FROM concepts WHERE user_id = $1 AND (status = 'active' OR community_id IS NOT NULL)) "
        "AS cur LEFT JOIN unnest($3::text[], $4::text[]) AS m(concept_id, community_id) "
        "ON m.concept_id = cur.concept_id "
        "WHERE c.user_id = $1 AND c.concept_id = cur.concept_id AND c.community_id IS DISTINCT FROM m.community_id "
        "RETURNING c.concept_id",
        user_id,
        to_db(at),
        list(members),
        list(members.values()),
    )
    return [row["concept_id"] for row in rows]


async def lock_concepts(db: Executor, user_id: str, concept_ids: Iterable[str]) -> list[ConceptRecord]:
    """These of the user's concepts, their rows locked until the transaction ends (a description's revision)."""
    wanted = sorted(set(concept_ids))
    if not wanted:
        return []
    rows = await db.fetch(
        "SELECT * FROM concepts WHERE user_id = $1 AND concept_id = ANY($2::text[]) ORDER BY concept_id FOR UPDATE",
        user_id,
        wanted,
    )
    return [ConceptRecord.from_row(row) for row in rows]


async def set_descriptions(db: Executor, user_id: str, descriptions: Mapping[str, str | None], *, at: datetime) -> int:
    """A revision's new descriptions of these of the user's concepts (the revision row keeps the old ones)."""
    if not descriptions:
        return 0
    status = await db.execute(
        "UPDATE concepts c SET description = t.description, last_updated_ts = $2 "
        "FROM unnest($3::text[], $4::text[]) AS t(concept_id, description) "
        "WHERE c.user_id = $1 AND c.concept_id = t.concept_id",
        user_id,
        to_db(at),
        list(descriptions),
        list(descriptions.values()),
    )
    return row_count(status)
