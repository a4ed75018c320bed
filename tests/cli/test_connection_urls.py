"""`stack status` and `doctor` tell other programs (psql, the web app's pg/Prisma and ioredis) how to connect."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import asyncpg
import pytest
import redis

from store.postgres import redact_url
from tests.cli.runner import run_cli


async def _current_database(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        return str(await conn.fetchval("SELECT current_database()"))
    finally:
        await conn.close()


@pytest.mark.skipif(bool(os.environ.get("TEST_DATABASE_URL")), reason="the test Postgres is not the embedded one")
def test_stack_status_urls_connect(stack_dir: Path, server_dsn: str, redis_server_url: str) -> None:
    status = run_cli("stack", "status", "--json", env={"ORRERY_DATA_DIR": str(stack_dir)})
    assert status.returncode == 0, status.stderr
    urls = json.loads(status.stdout)
    postgres, rd = urls["postgres"], urls["redis"]
    assert postgres["running"] and postgres["url"].startswith("postgresql://postgres@localhost/orrery?host=/")

    assert asyncio.run(_current_database(postgres["asyncpg_url"])) == "orrery"
    if shutil.which("psql") is not None:  # libpq: what psql, and through the same rules node's pg and Prisma, read
        for url in (postgres["url"], postgres["asyncpg_url"]):
            psql = subprocess.run(["psql", url, "-Atc", "SELECT current_database()"], capture_output=True, text=True)
            assert psql.stdout.strip() == "orrery", psql.stderr
    assert redis.Redis.from_url(rd["url"]).ping()
    assert redis.Redis(unix_socket_path=rd["socket"]).ping()

    narrow = run_cli("stack", "status", env={"ORRERY_DATA_DIR": str(stack_dir), "COLUMNS": "40"})
    assert f"Postgres (psql, node pg, Prisma): {postgres['url']}\n" in narrow.stdout, "printed whole, on one line"
    assert f'ioredis: new Redis("{rd["socket"]}")' in narrow.stdout


async def test_doctor_prints_whole_urls_on_a_narrow_terminal(tmp_path: Path, database_url: str, redis_url: str) -> None:
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "ORRERY_DATA_DIR": str(tmp_path), "COLUMNS": "60"}
    env["ORRERY_LLM"] = "scripted"  # no LLM configured is a DOWN row of its own (tests/cli/test_doctor.py)
    doctor = run_cli("doctor", env=env)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert f"Postgres (psql, node pg, Prisma): {redact_url(database_url)}\n" in doctor.stdout
    assert f"Redis (redis-py, arq): {redact_url(redis_url)}\n" in doctor.stdout
    assert "…" not in doctor.stdout, "nothing in the table is cut off"
