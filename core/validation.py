"""One way to say what is wrong with data pydantic refused: `path: problem` per error.

Used for a model's answer (the repair request), a job's arguments (the ledger and the CLI), stored JSON (logs) and
settings (with environment variable names), so a path reads the same everywhere: `concepts[0].name`.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError


def location(loc: Sequence[int | str]) -> str:
    """`concepts[0].name` from pydantic's ('concepts', 0, 'name')."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def error_lines(exc: ValidationError, *, root: str = "(root)") -> list[str]:
    """One `path: problem` line per error; `root` names the whole value when the error is about it."""
    return [f"{location(err['loc']) or root}: {err['msg']}" for err in exc.errors()]
