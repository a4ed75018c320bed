"""A relay in front of the test Postgres that a test can cut and restore, as an operator's Postgres restart does.

Cut: every open connection is dropped and the Unix socket file disappears, so a new connection fails with
FileNotFoundError, exactly what the embedded Postgres does while it restarts. Restore: the socket is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


class PostgresSwitch:
    def __init__(self, dsn: str) -> None:
        parts = urlsplit(dsn)
        query = dict(parse_qsl(parts.query))
        if "host" not in query or not query["host"].startswith("/"):
            raise ValueError("PostgresSwitch relays the embedded Postgres's Unix socket; TEST_DATABASE_URL is TCP")
        port = parts.port or int(query.get("port", 5432))
        self._target = str(Path(query["host"]) / f".s.PGSQL.{port}")
        self._dir = tempfile.mkdtemp(prefix="pgsw")  # short: a socket path has a ~100-byte limit
        self._socket = str(Path(self._dir) / f".s.PGSQL.{port}")
        self.dsn = urlunsplit(parts._replace(query=urlencode({**query, "host": self._dir})))
        self._server: asyncio.AbstractServer | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def restore(self) -> None:
        """Accept connections (again)."""
        self._server = await asyncio.start_unix_server(self._relay, path=self._socket)

    async def cut(self) -> None:
        """Drop every connection and remove the socket."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._socket)

    async def close(self) -> None:
        await self.cut()
        shutil.rmtree(self._dir, ignore_errors=True)

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        try:
            server_reader, server_writer = await asyncio.open_unix_connection(self._target)
            try:
                await asyncio.gather(_pump(client_reader, server_writer), _pump(server_reader, client_writer))
            finally:
                server_writer.close()
        except (asyncio.CancelledError, OSError):
            pass
        finally:
            client_writer.close()
            self._pipes.discard(task)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
