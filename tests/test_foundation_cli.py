"""The foundation as an operator meets it: the CLI on bad configuration, and the embedded stack across processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import asyncpg
import redis

from store import embedded
from tests.cli.runner import ROOT, run_cli


def test_unreachable_database_is_one_line_with_password_redacted(tmp_path: Path) -> None:
    result = run_cli(
        "migrate",
        env={
            "DATABASE_URL": "postgresql://orrery:s3cret@127.0.0.1:1/orrery",
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "ORRERY_DATA_DIR": str(tmp_path),
        },
    )
    assert result.returncode == 2
    assert "cannot reach Postgres at postgresql://orrery:***@127.0.0.1:1/orrery" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "postgres").exists(), "nothing embedded starts when the URL is set"


def test_doctor_reports_a_down_redis_and_exits_non_zero(tmp_path: Path, server_dsn: str) -> None:
    result = run_cli(
        "doctor",
        env={
            "DATABASE_URL": server_dsn,
            "REDIS_URL": "redis://:pw@127.0.0.1:1/0",
            "ORRERY_DATA_DIR": str(tmp_path),
            "COLUMNS": "250",
        },
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "DOWN" in result.stdout
    assert "cannot reach Redis at redis://:***@127.0.0.1:1/0" in result.stdout
    assert "Traceback" not in result.stderr


def test_invalid_setting_names_the_variable() -> None:
    result = run_cli("doctor", env={"ORRERY_POLL_DELAY_S": "-1", "DATABASE_URL": "mysql://x"})
    assert result.returncode == 2
    assert "ORRERY_POLL_DELAY_S: Input should be greater than 0 (got '-1')" in result.stderr
    assert "DATABASE_URL: Value error, must start with postgresql://" in result.stderr
    assert "Traceback" not in result.stderr


def test_unwritable_data_dir_is_one_clear_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run_cli("doctor", env={"ORRERY_DATA_DIR": str(blocker / "data")})
    assert result.returncode == 2
    assert f"data directory {blocker / 'data'} is not writable" in result.stderr
    assert "Traceback" not in result.stderr


_STARTER = """
import sys
from pathlib import Path
from store.embedded import resolve_backends
found = resolve_backends(None, None, Path(sys.argv[1]))
print(found.database_url)
print(found.redis_url)
"""


def test_embedded_stack_is_shared_by_processes_and_survives_restarts(tmp_path: Path) -> None:
    data_dir = tmp_path / "stack"
    try:
        starters = [
            subprocess.Popen(
                [sys.executable, "-c", _STARTER, str(data_dir)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )
            for _ in range(2)
        ]
        outputs = [p.communicate(timeout=120) for p in starters]
        assert all(p.returncode == 0 for p in starters), outputs
        assert outputs[0][0] == outputs[1][0], "both processes must join the same servers"
        database_url, redis_url = outputs[0][0].split()

        import asyncio

        async def write_and_read(value: str | None) -> str | None:
            conn = await asyncpg.connect(database_url)
            try:
                await conn.execute("CREATE TABLE IF NOT EXISTS probe (v TEXT)")
                if value is not None:
                    await conn.execute("INSERT INTO probe VALUES ($1)", value)
                return await conn.fetchval("SELECT v FROM probe")  # type: ignore[no-any-return]
            finally:
                await conn.close()

        assert asyncio.run(write_and_read("kept")) == "kept"
        redis.Redis.from_url(redis_url).set("probe", "kept")

        assert embedded.stop_postgres(data_dir)
        assert embedded.stop_redis(data_dir)
        assert not embedded.redis_running(data_dir)
        again = embedded.resolve_backends(None, None, data_dir)
        assert asyncio.run(write_and_read(None)) == "kept"
        assert redis.Redis.from_url(again.redis_url).get("probe") == b"kept"
    finally:
        embedded.remove_data_dir(data_dir)


async def test_doctor_is_green_on_a_migrated_database_and_names_schema_drift(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "ORRERY_DATA_DIR": str(tmp_path), "COLUMNS": "250"}
    env["ORRERY_LLM"] = "scripted"
    healthy = run_cli("doctor", env=env)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "matches schema.prisma" in healthy.stdout

    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute('ALTER TABLE "memory_units" DROP COLUMN "sentiment_score"')
    finally:
        await conn.close()
    drifted = run_cli("doctor", env=env)
    assert drifted.returncode == 1
    assert "memory_units.sentiment_score" in drifted.stdout
