"""Where the benchmarks run: the servers from DATABASE_URL / REDIS_URL, else a throwaway embedded stack."""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from store import embedded
from store.migrate import migrate
from store.postgres import connect


@dataclass(frozen=True)
class BenchServers:
    postgres_dsn: str  # a server to create fresh databases on
    redis_url: str
    data_dir: Path


@contextmanager
def bench_servers() -> Iterator[BenchServers]:
    """The configured servers, or an embedded Postgres and Redis in a temporary directory, stopped afterwards."""
    database_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    with tempfile.TemporaryDirectory(prefix="orrery-bench-") as tmp:
        data_dir = Path(tmp)
        try:
            server = database_url or embedded.start_postgres(data_dir)
            yield BenchServers(server, redis_url or embedded.start_redis(data_dir), data_dir)
        finally:
            embedded.stop_postgres(data_dir)
            embedded.stop_redis(data_dir)


async def fresh_database(server_dsn: str) -> str:
    """A new, migrated database on the server, so runs never see each other's rows."""
    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = await connect(server_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    dsn = urlunsplit(urlsplit(server_dsn)._replace(path=f"/{name}"))
    conn = await connect(dsn)
    await migrate(conn)
    await conn.close()
    return dsn
