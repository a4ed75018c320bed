"""One data-access path per table (docs/store.md, "One write path per table"): every statement that writes a table
Orrery keeps a repository for lives in that repository module; the other store modules (an agent's write
transaction, the cycle, the sweeps) compose repository calls. Read by scanning the SQL in store/, so a second writer
of a table fails here before it drifts from the first."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

WRITE = re.compile(
    r"\b(?:INSERT\s+INTO|DELETE\s+FROM)\s+(?:public\.|runtime\.)?\"?(\w+)"
    r"|\bUPDATE\s+(?:public\.|runtime\.)?\"?(\w+)\"?\s+(?:\w+\s+)?SET\b"
)
OWNER = {
    "conversation_messages": "conversations",
    "user_graph_projections": "graph_projections",
}
"""Tables whose repository module is named otherwise (a message belongs to its conversation)."""
ERASURE = "store/forget.py"
"""forget-user erases a user from every table, by design in one place: not a second path to any one of them."""
RUNTIME_OWNED = {
    "outbox": {"store/outbox.py"},
    "job_runs": {"store/ledger.py"},
    "llm_calls": {"store/llm_calls.py"},
    "sync_state": {"store/outbox.py"},
    "concept_name_vectors": {"store/concept_names.py"},
    "projection_refresh": {"store/projection_refresh.py"},
    "schema_migrations": {"store/migrate.py"},
    "graph_nodes": {"store/graph/postgres.py"},
    "vector_items": {"store/vector/pgvector.py"},
    "knowledge_edges": {"store/repos/knowledge_edges.py", "store/graph/postgres.py"},
}
"""The runtime schema's tables and their one module; the embedded graph keeps its own rows of knowledge_edges (its
structural edges and the in_graph flag), apart from the truth rows the repository writes."""


def writers(root: Path = ROOT) -> dict[str, set[str]]:
    """Table → the store modules with a statement writing it."""
    found: dict[str, set[str]] = {}
    for path in sorted((root / "store").rglob("*.py")):
        module = str(path.relative_to(root))
        for match in WRITE.finditer(path.read_text(encoding="utf-8")):
            table = match.group(1) or match.group(2)
            found.setdefault(table, set()).add(module)
    return found


def misplaced(found: dict[str, set[str]]) -> list[str]:
    problems = []
    for table, modules in sorted(found.items()):
        expected = RUNTIME_OWNED.get(table, {f"store/repos/{OWNER.get(table, table)}.py"})
        extra = sorted(modules - expected - {ERASURE})
        if extra:
            problems.append(f"{table} is written by {', '.join(extra)}; only {', '.join(sorted(expected))} may")
    return problems


def test_every_table_is_written_through_one_module() -> None:
    found = writers()
    assert {"memory_units", "derived_artifacts", "communities", "conversations", "users"} <= set(found)
    assert misplaced(found) == []


def test_the_scan_sees_a_second_writer(tmp_path: Path) -> None:
    (tmp_path / "store" / "repos").mkdir(parents=True)
    (tmp_path / "store" / "repos" / "cards.py").write_text('SQL = "UPDATE cards SET status = $2"\n')
    (tmp_path / "store" / "stray.py").write_text(
        'A = "INSERT INTO public.cards (card_id) VALUES ($1)"\nB = "UPDATE cards c SET x = 1"\n'
        'C = "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = 2"\nD = "SELECT 1 FOR UPDATE OF c"\n'
    )
    found = writers(tmp_path)
    assert found == {"cards": {"store/repos/cards.py", "store/stray.py"}, "t": {"store/stray.py"}}
    assert misplaced(found) == [
        "cards is written by store/stray.py; only store/repos/cards.py may",
        "t is written by store/stray.py; only store/repos/t.py may",
    ]
