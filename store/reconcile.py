"""Reconciliation: compare Postgres with the graph and vector stores by id and content hash, and say how to repair.

What a store should hold for a user is read with store/sync.py, the definition the dispatcher applies, so a store
the outbox kept up to date shows no drift at all. Repair never writes to a store itself: it records outbox rows
for the drifted entities, for the drifted store only, and the dispatcher makes the store match Postgres (deleting
what Postgres no longer has). Differences an outbox row is still carrying to the store are counted as `pending`,
not as drift: they are the dispatcher's lag, not an error.

The embedded graph keeps its relationships in runtime.knowledge_edges, where a truth row is in the graph while its
`in_graph` flag is set; a relationship to an entity Postgres does not have is held with a placeholder node (no
properties, hash None), exactly as the dispatcher leaves it.

Orphans are what a store holds of users Postgres no longer has: a dispatcher that read a user's rows before
forget-user deleted them can apply its batch after forget-user emptied the stores (Weaviate recreates the tenant,
Neo4j the nodes), and a per-user comparison never looks at a user Postgres does not list. Reconcile asks the
store which users it holds (`held_users`, every adapter) and Postgres which of them exist (`find_orphans`);
`remove_orphans` deletes the rest with the store's `delete_user`, as forget-user does: there is no Postgres row to
send through the outbox. It refuses when most of a store's users are unknown to Postgres (`Orphans.refusal`).
In the embedded stores a foreign key to users cascades, so an orphan there needs that key bypassed (a restore or
replication apply with triggers off); the check is the same for every backend.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from core.errors import PermanentError
from core.vocabulary import NodeLabel
from store import outbox
from store.drift import Drift, diff
from store.graph.base import EDGE_TYPES, EdgeKey, GraphStore, node_from_row
from store.postgres import Executor
from store.sync import VECTOR_LABELS, Ref, knowledge_item, outgoing_edges, read_records, user_refs
from store.vector.base import ItemKey, SourceEntityType, VectorStore

GRAPH, VECTOR = "graph", "vector"
LABEL_OF: dict[SourceEntityType, NodeLabel] = {kind: label for label, kind in VECTOR_LABELS.items()}
STORE_LABELS: dict[str, tuple[NodeLabel, ...]] = {GRAPH: tuple(NodeLabel), VECTOR: tuple(VECTOR_LABELS)}
"""The entities each store holds: every node label in the graph; memory units, concepts, artifacts as vectors."""


def id_text(value: object) -> str:
    """A drifted id as people read it: a node key or item id, or `Label:key -TYPE-> Label:key` for a relationship."""
    if isinstance(value, EdgeKey):
        return f"{value.source.label}:{value.source.key} -{value.type}-> {value.target.label}:{value.target.key}"
    if isinstance(value, ItemKey):
        return value.source_entity_id
    return str(value)


def _edge_order(key: EdgeKey) -> tuple[str, ...]:
    return key.source.label, key.source.key, key.type, key.target.label, key.target.key


@dataclass(frozen=True)
class KindDrift:
    """One node label, relationship type or item type of one store: how many it should hold and holds, and how
    they differ (changes still in the outbox left out and counted in `pending`)."""

    kind: str
    expected: int
    held: int
    drift: Drift[Any]
    pending: int

    def as_json(self, examples: int) -> dict[str, Any]:
        """Counts, and up to `examples` ids of each way (for `--json`)."""

        def listed(ids: tuple[Any, ...]) -> list[str]:
            return [id_text(value) for value in ids[:examples]]

        return {
            "kind": self.kind,
            "expected": self.expected,
            "held": self.held,
            "missing": len(self.drift.missing),
            "extra": len(self.drift.extra),
            "changed": len(self.drift.changed),
            "pending": self.pending,
            "examples": {
                "missing": listed(self.drift.missing),
                "extra": listed(self.drift.extra),
                "changed": listed(self.drift.changed),
            },
        }


@dataclass(frozen=True)
class StoreDrift:
    """One user's drift in one store, and the entities whose outbox rows repair it."""

    store: str
    user_id: str
    kinds: tuple[KindDrift, ...]
    repair: tuple[Ref, ...]

    @property
    def total(self) -> int:
        return sum(len(kind.drift) for kind in self.kinds)

    @property
    def pending(self) -> int:
        return sum(kind.pending for kind in self.kinds)

    def totals(self) -> dict[str, int]:
        return {
            "missing": sum(len(k.drift.missing) for k in self.kinds),
            "extra": sum(len(k.drift.extra) for k in self.kinds),
            "changed": sum(len(k.drift.changed) for k in self.kinds),
            "pending": self.pending,
        }


async def pending_refs(db: Executor, user_id: str, store: str) -> set[Ref]:
    """Entities of the user with an outbox row for `store` not yet applied."""
    rows = await db.fetch(
        "SELECT DISTINCT label, entity_id FROM runtime.outbox WHERE user_id = $1 AND store = $2", user_id, store
    )
    return {Ref(NodeLabel(row["label"]), row["entity_id"]) for row in rows}


def _kind(
    name: str, expected: Mapping[Any, Any], held: Mapping[Any, Any], drift: Drift[Any], pending: Collection[Any]
) -> KindDrift:
    """`pending`: the drifted ids an outbox row is still carrying to the store."""
    left = drift.without(pending.__contains__)
    return KindDrift(name, len(expected), len(held), left, len(drift) - len(left))


async def expected_graph(
    db: Executor, user_id: str
) -> tuple[dict[NodeLabel, dict[str, str | None]], dict[str, dict[EdgeKey, str]]]:
    """(label → key → content hash, type → relationship → content hash) that the graph should hold for the user:
    every row's node, the relationships leaving them, and a placeholder (None) for an end Postgres does not have."""
    present = {label: await read_records(db, user_id, label, None) for label in NodeLabel}
    nodes: dict[NodeLabel, dict[str, str | None]] = {
        label: {key: node_from_row(label, record.model_dump(), user_id).content_hash for key, record in found.items()}
        for label, found in present.items()
    }
    edges: dict[str, dict[EdgeKey, str]] = {kind.value: {} for kind in EDGE_TYPES}
    for edge in await outgoing_edges(db, user_id, present):
        edges[edge.type.value][edge.key] = edge.content_hash
        nodes[edge.target.label].setdefault(edge.target.key, None)
    return nodes, edges


async def graph_drift(db: Executor, graph: GraphStore, user_id: str) -> StoreDrift:
    """The user's drift in the graph: nodes per label and relationships per type, by key and content hash."""
    want_nodes, want_edges = await expected_graph(db, user_id)
    pending = await pending_refs(db, user_id, GRAPH)
    into: dict[tuple[NodeLabel, str], set[Ref]] = {}
    for wanted in want_edges.values():
        for key in wanted:
            into.setdefault((key.target.label, key.target.key), set()).add(Ref(key.source.label, key.source.key))
    kinds: list[KindDrift] = []
    repair: set[Ref] = set()
    for label in NodeLabel:
        held = await graph.node_hashes(user_id, label)
        want = want_nodes[label]
        carried = {ref.entity_id for ref in pending if ref.label is label}
        kind = _kind(label.value, want, held, diff(want, held), carried)
        kinds.append(kind)
        # A missing placeholder comes back with the relationships to it, so their sources are repaired: asking for
        # the placeholder itself would delete it (Postgres has no row), and the relationships with it.
        repair |= {Ref(label, key) for key in kind.drift.missing if want[key] is not None}
        repair |= {source for key in kind.drift.missing if want[key] is None for source in into[(label, key)]}
        repair |= {Ref(label, key) for key in (*kind.drift.extra, *kind.drift.changed)}
    for edge_kind in EDGE_TYPES:
        held_edges = await graph.edge_hashes(user_id, edge_kind)
        want_of_kind = want_edges[edge_kind.value]

        edge_drift = diff(want_of_kind, held_edges, order=_edge_order)
        carried_edges = {
            key
            for key in edge_drift.ids()
            if Ref(key.source.label, key.source.key) in pending or Ref(key.target.label, key.target.key) in pending
        }
        kind = _kind(edge_kind.value, want_of_kind, held_edges, edge_drift, carried_edges)
        kinds.append(kind)
        repair |= {Ref(key.source.label, key.source.key) for key in kind.drift.ids()}
    return StoreDrift(GRAPH, user_id, tuple(kinds), tuple(sorted(repair, key=lambda r: (r.label, r.entity_id))))


async def expected_vectors(db: Executor, user_id: str) -> dict[SourceEntityType, dict[ItemKey, str]]:
    """Item type → key → content hash of every item the vector store should hold for the user."""
    expected: dict[SourceEntityType, dict[ItemKey, str]] = {}
    for label, kind in VECTOR_LABELS.items():
        items = [knowledge_item(label, record) for record in (await read_records(db, user_id, label, None)).values()]
        expected[kind] = {item.key: item.content_hash for item in items if item is not None}
    return expected


async def vector_drift(db: Executor, vector: VectorStore, user_id: str, model_version: str) -> StoreDrift:
    """The user's drift in the vector store: items per type by key, content hash and model (an item embedded with
    another model than `model_version`, the configured embedder's, counts as changed)."""
    want = await expected_vectors(db, user_id)
    held_all = await vector.fingerprints(user_id)
    pending = await pending_refs(db, user_id, VECTOR)
    kinds: list[KindDrift] = []
    repair: set[Ref] = set()
    for kind, expected in want.items():
        wanted = {key: (content, model_version) for key, content in expected.items()}
        held = {key: tuple(fp) for key, fp in held_all.items() if key.source_entity_type is kind}
        drift = diff(wanted, held, order=lambda key: key.source_entity_id)
        carried = {ItemKey(kind, ref.entity_id) for ref in pending if VECTOR_LABELS.get(ref.label) is kind}
        found = _kind(kind.value, wanted, held, drift, carried)
        kinds.append(found)
        repair |= {Ref(LABEL_OF[key.source_entity_type], key.source_entity_id) for key in found.drift.ids()}
    return StoreDrift(VECTOR, user_id, tuple(kinds), tuple(sorted(repair, key=lambda r: (r.label, r.entity_id))))


async def record_refs(db: Executor, user_id: str, store: str, refs: Iterable[Ref]) -> int:
    """Outbox rows for `store` only, one per entity: the dispatcher then makes the store match Postgres for each."""
    return await outbox.record_changes(
        db, user_id, [outbox.Change(ref.label, ref.entity_id) for ref in refs], stores=(store,)
    )


async def stale_vector_refs(vector: VectorStore, user_id: str, model_version: str) -> list[Ref]:
    """The user's items embedded with another model than `model_version` (to re-embed after a model change)."""
    held = await vector.fingerprints(user_id)
    stale = [key for key, fp in held.items() if fp.embedding_model_version != model_version]
    return [Ref(LABEL_OF[key.source_entity_type], key.source_entity_id) for key in sorted(stale)]


async def store_refs(db: Executor, user_id: str, store: str) -> list[Ref]:
    """Every entity of the user that `store` may hold (for a rebuild)."""
    return await user_refs(db, user_id, STORE_LABELS[store])


async def user_ids(db: Executor) -> list[str]:
    """Every user in Postgres, in id order (a whole-database reconcile or rebuild goes through them)."""
    return [row["user_id"] for row in await db.fetch("SELECT user_id FROM users ORDER BY user_id")]


async def user_exists(db: Executor, user_id: str) -> bool:
    return bool(await db.fetchval("SELECT EXISTS (SELECT 1 FROM users WHERE user_id = $1)", user_id))


class HoldsUsers(Protocol):
    """What finding and removing orphans needs of a store: both ports have it."""

    async def held_users(self) -> list[str]: ...

    async def delete_user(self, user_id: str) -> int: ...


ORPHAN_CHECK_CHUNK = 10_000
"""Held user ids per Postgres lookup."""

ORPHAN_FLOOR, ORPHAN_SHARE_LIMIT = 10, 0.5
"""More orphans than both (a count, a share of the users the store holds) are not removed automatically."""


class OrphanRemovalRefused(PermanentError):
    """Most users a store holds are unknown to Postgres: a misconfigured URL, not a pile of orphans."""


@dataclass(frozen=True)
class Orphans:
    """The users a store holds something of that have no row in Postgres (sorted), and how many users it holds."""

    held: int
    user_ids: tuple[str, ...]

    @property
    def refusal(self) -> str | None:
        """Why they must not be removed automatically: a store where most users are unknown to Postgres is more
        likely another deployment's (a wrong NEO4J_URI or WEAVIATE_URL) than this one's leftovers."""
        count = len(self.user_ids)
        if count <= ORPHAN_FLOOR or count <= self.held * ORPHAN_SHARE_LIMIT:
            return None
        return (
            f"{count} of the {self.held} users the store holds have no row in Postgres: is it another database's "
            "store (check NEO4J_URI / WEAVIATE_URL)? Nothing removed; remove users one by one with `forget-user`"
        )


async def find_orphans(db: Executor, store: HoldsUsers) -> Orphans:
    held = await store.held_users()
    orphans: list[str] = []
    for start in range(0, len(held), ORPHAN_CHECK_CHUNK):
        chunk = held[start : start + ORPHAN_CHECK_CHUNK]
        rows = await db.fetch("SELECT user_id FROM users WHERE user_id = ANY($1::text[])", chunk)
        known = {row["user_id"] for row in rows}
        orphans += [user_id for user_id in chunk if user_id not in known]
    return Orphans(len(held), tuple(orphans))


async def remove_orphans(db: Executor, store: HoldsUsers, orphans: Orphans) -> int:
    """Delete from `store` everything of each orphan that Postgres still has no row for (asked again just before,
    so a user created meanwhile keeps their items); how many nodes or items went. OrphanRemovalRefused when
    `orphans.refusal` says why not."""
    if orphans.refusal is not None:
        raise OrphanRemovalRefused(orphans.refusal)
    removed = 0
    for user_id in orphans.user_ids:
        if not await user_exists(db, user_id):
            removed += await store.delete_user(user_id)
    return removed
