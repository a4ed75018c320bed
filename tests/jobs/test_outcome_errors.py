"""Which errors of a ledger write mean "Postgres is away: keep the outcome and come again" (jobs/runtime/outcomes.py):
one misread leaves a run 'running' for good, its job gone from the queue."""

from __future__ import annotations

import asyncpg
import pytest

from jobs.runtime.outcomes import store_unreachable


@pytest.mark.parametrize(
    "error",
    [
        # a pooled connection used while the server's restart had not yet reached it (seen in CI)
        asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
        asyncpg.InterfaceError("connection was closed in the middle of operation"),
        ConnectionRefusedError(),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    ],
)
def test_a_lost_connection_is_waited_for(error: BaseException) -> None:
    assert store_unreachable(error)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.UntranslatableCharacterError("unsupported Unicode escape sequence"),
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
        ValueError("a bug"),
    ],
)
def test_what_postgres_refuses_is_not_an_outage(error: BaseException) -> None:
    assert not store_unreachable(error)
