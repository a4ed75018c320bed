"""The exact text embedded for each kind of entity: one recipe, used to store items (store/vector/texts.py) and to
compare a new mention with them (ingestion's similarity rule), so both sides always embed alike."""

from __future__ import annotations


def joined(*parts: str | None) -> str:
    return "\n".join(part.strip() for part in parts if part and part.strip())


def concept_text(name: str, kind: str, description: str | None) -> str:
    """The name with its type ("Emma (person)"), then the description: a person and a place named alike embed apart."""
    return joined(f"{name} ({kind})", description)


def memory_unit_text(title: str, content: str) -> str:
    return joined(title, content)


def artifact_text(title: str, narrative: str | None) -> str:
    return joined(title, narrative)
