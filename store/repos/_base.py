"""What every repository shares: UTC timestamps, ids, tolerant JSON columns, row-count parsing, row locks."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Self

import asyncpg
import structlog
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationInfo

from store.postgres import Executor

log = structlog.get_logger(__name__)


class NotFoundError(LookupError):
    """The row does not exist for this user (it may exist for another one: the message never says so)."""


def new_id() -> str:
    """A fresh row id: the runtime generates TEXT uuid4 ids, as Prisma's client does (no database default)."""
    return str(uuid.uuid4())


def utc_now() -> datetime:
    """Now, aware UTC, cut to the millisecond that TIMESTAMP(3) keeps, so a written value reads back equal."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def to_db(moment: datetime) -> datetime:
    """An aware datetime as the naive UTC value a TIMESTAMP(3) column holds.

    Naive input is refused: guessing its zone is how timestamps silently shift by hours.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()} given; pass an aware (UTC) datetime")
    naive = moment.astimezone(UTC).replace(tzinfo=None)
    return naive.replace(microsecond=naive.microsecond // 1000 * 1000)


def opt_to_db(moment: datetime | None) -> datetime | None:
    return None if moment is None else to_db(moment)


def from_db(moment: datetime) -> datetime:
    """A TIMESTAMP(3) value read back (naive UTC) as an aware UTC datetime; an aware one is converted to UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(from_db)]
"""A TIMESTAMP(3) column read back: the stored naive UTC value as an aware UTC datetime."""


def _object_or_none(value: Any, info: ValidationInfo) -> Any:
    if value is None or isinstance(value, dict):
        return value
    log.warning("store.json_not_an_object", field=info.field_name, got=type(value).__name__)
    return None


JsonObject = Annotated[dict[str, Any] | None, BeforeValidator(_object_or_none)]
"""A JSONB column that should hold an object. Another program (the web app) writes these columns too, so a list or
a string found there reads as None with a warning instead of crashing the job that reads the row."""


def _object_or_empty(value: Any, info: ValidationInfo) -> Any:
    return _object_or_none(value, info) or {}


RequiredJsonObject = Annotated[dict[str, Any], BeforeValidator(_object_or_empty)]
"""A NOT NULL JSONB column that should hold an object; anything else reads as {} with a warning."""


def _list_or_empty(value: Any) -> Any:
    return [] if value is None else value


TextArray = Annotated[list[str], BeforeValidator(_list_or_empty)]
"""A nullable TEXT[] column with an empty-array default (Prisma's String[]): NULL reads as []."""


class Record(BaseModel):
    """A row as the repositories return it; built from an asyncpg record by column name."""

    model_config = ConfigDict(frozen=True)

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Self:
        return cls.model_validate(dict(row))

    @classmethod
    def from_optional(cls, row: asyncpg.Record | None) -> Self | None:
        return None if row is None else cls.from_row(row)


def row_count(status: str) -> int:
    """The number of rows an INSERT/UPDATE/DELETE status string ("DELETE 3") reports."""
    return int(status.split()[-1])


def _same_count(count: int) -> int:
    return count


@dataclass(frozen=True)
class Write:
    """One data-modifying statement built but not sent: `apply` sends it alone, `apply_together` sends several
    independent ones in one round trip.

    Why: a statement's round trip costs the worker and Postgres about as much as the small insert it carries, and
    inside a write's transaction every round trip is time the user's row stays locked (more so against a remote
    Postgres). The repository still owns its SQL; the caller only decides what travels together. `sql` must not
    end in RETURNING (the row count is what comes back); `result` turns that count into the function's answer, or
    raises (a row that was not there), after the statement ran, inside the caller's transaction.
    """

    sql: str
    args: tuple[Any, ...]
    result: Callable[[int], int] = _same_count

    def __post_init__(self) -> None:
        if "RETURNING" in self.sql.upper():
            raise ValueError("a Write answers with its row count: its SQL must not have a RETURNING clause")


_PARAMETER = re.compile(r"\$(\d+)")


def _renumbered(sql: str, offset: int) -> str:
    return _PARAMETER.sub(lambda match: f"${int(match.group(1)) + offset}", sql)


async def apply(db: Executor, write: Write | None) -> int:
    """Send one write (None: nothing to write, 0); returns its `result`."""
    if write is None:
        return 0
    return write.result(row_count(await db.execute(write.sql, *write.args)))


async def apply_together(db: Executor, writes: Sequence[Write | None]) -> list[int]:
    """Send `writes` in one statement (data-modifying WITH clauses) and return each one's `result`, in order.

    Only for writes that do not depend on each other: they run on one snapshot, so none sees the rows another adds,
    and no two may change the same row. Each part's parameters are renumbered after the previous parts'."""
    present = [(i, w) for i, w in enumerate(writes) if w is not None]
    results = [0] * len(writes)
    if len(present) <= 1:
        for i, write in present:
            results[i] = await apply(db, write)
        return results
    parts: list[str] = []
    args: list[Any] = []
    for n, (_, write) in enumerate(present):
        parts.append(f"w{n} AS ({_renumbered(write.sql, len(args))} RETURNING 1)")
        args.extend(write.args)
    counts = ", ".join(f"(SELECT count(*) FROM w{n})" for n in range(len(present)))
    row = await db.fetchrow(f"WITH {', '.join(parts)} SELECT {counts}", *args)
    assert row is not None
    for n, (i, write) in enumerate(present):
        results[i] = write.result(int(row[n]))
    return results


async def _lock(conn: asyncpg.Connection, key: str | Sequence[str]) -> None:
    keys = [key] if isinstance(key, str) else list(set(key))  # Postgres sorts them: one order for every caller
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) "
        "FROM (SELECT k FROM unnest($1::text[]) AS k ORDER BY k) AS sorted_keys",
        keys,
    )


@asynccontextmanager
async def transaction(db: Executor) -> AsyncIterator[asyncpg.Connection]:
    """A connection inside a transaction: a new one on a pool, the caller's own when it is already in one (a job
    running several repository functions in one transaction)."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn, conn.transaction():
            yield conn
        return
    if db.is_in_transaction():
        yield db
        return
    async with db.transaction():
        yield db


@asynccontextmanager
async def serialized(db: Executor, key: str | Sequence[str]) -> AsyncIterator[asyncpg.Connection]:
    """A connection holding a transaction-scoped advisory lock on `key` (or on each of several keys, taken in sorted
    order in one round trip so two callers can never deadlock) until its transaction ends.

    Why: "find, else insert" on a table without a matching unique index (concept normalized names, one card per
    entity) is only race-free when racers for the same key take turns. On a pool a short transaction is opened;
    on a connection already inside a transaction (a job's write) the lock is held until that transaction ends.
    """
    async with transaction(db) as conn:
        await _lock(conn, key)
        yield conn


def json_object(value: dict[str, Any] | None, column: str) -> dict[str, Any] | None:
    """Refuse a non-object for a JSONB column the runtime writes as an object (callers outside mypy's view)."""
    if value is not None and not isinstance(value, dict):
        raise TypeError(f"{column} must be a JSON object (dict), got {type(value).__name__}")
    return value
