"""`doctor` says which LLM is in use and probes it and the embeddings endpoint with a cheap request: a closed port,
a refused key and no LLM at all are DOWN, not "ok" (issue 21, blockers 2 and 3)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from agents.scripted_llm import ScriptedLLMServer
from store.migrate import migrate
from store.postgres import connect
from tests.cli.runner import run_cli
from tests.embeddings_server import EmbeddingsServer


def doctor(env: dict[str, str]) -> tuple[int, dict[str, dict[str, Any]]]:
    result = run_cli("doctor", "--json", env=env)
    assert "Traceback" not in result.stderr, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] == (result.returncode == 0) and report["not_checked"], report
    return result.returncode, {check["backend"]: check for check in report["checks"]}


@contextmanager
def refusing_server() -> Iterator[str]:
    """An endpoint that answers every request 401, as OpenAI does for a bad key."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

        def do_GET(self) -> None:
            body = b'{"error": {"message": "Incorrect API key provided"}}'
            self.send_response(401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_doctor_names_the_llm_and_fails_without_one(database_url: str, redis_url: str, tmp_path: Path) -> None:
    base = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "ORRERY_DATA_DIR": str(tmp_path)}

    code, checks = doctor(base)
    assert code == 1 and checks["LLM"]["status"] == "DOWN", checks["LLM"]
    assert "no LLM is configured" in checks["LLM"]["detail"] and "workers refuse to start" in checks["LLM"]["detail"]

    code, checks = doctor({**base, "ORRERY_LLM": "scripted"})
    assert code == 0 and checks["LLM"]["status"] == "warn", checks["LLM"]
    assert "scripted sample answers (ORRERY_LLM=scripted): for the demo and tests only" in checks["LLM"]["detail"]
    assert checks["embeddings"]["status"] == "ok" and "installed, not loaded" in checks["embeddings"]["detail"]


def test_doctor_probes_the_llm_endpoint(database_url: str, redis_url: str, tmp_path: Path) -> None:
    base = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "ORRERY_DATA_DIR": str(tmp_path)}

    code, checks = doctor({**base, "OPENAI_BASE_URL": "http://127.0.0.1:1/v1"})
    assert code == 1 and checks["LLM"]["status"] == "DOWN", checks["LLM"]
    assert checks["LLM"]["detail"].startswith("cannot reach http://127.0.0.1:1/v1")

    with refusing_server() as url:
        code, checks = doctor({**base, "OPENAI_BASE_URL": url, "OPENAI_API_KEY": "sk-wrong"})
    assert code == 1 and "refused the key (HTTP 401): check OPENAI_API_KEY" in checks["LLM"]["detail"]

    with ScriptedLLMServer(model_name="gpt-4o-mini") as llm:
        code, checks = doctor({**base, "OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": "k"})
        assert code == 0 and checks["LLM"]["status"] == "ok", checks["LLM"]
        assert checks["LLM"]["detail"] == "reachable, key accepted, offers gpt-4o-mini"

        code, checks = doctor({**base, "OPENAI_BASE_URL": llm.base_url, "ORRERY_INSIGHT_MODEL": "gpt-9"})
        assert code == 0 and checks["LLM"]["status"] == "warn"
        assert "it does not list gpt-9" in checks["LLM"]["detail"]


def test_doctor_probes_the_embeddings_endpoint(database_url: str, redis_url: str, tmp_path: Path) -> None:
    base = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "ORRERY_DATA_DIR": str(tmp_path),
        "ORRERY_LLM": "scripted",
        "ORRERY_EMBEDDINGS_MODEL": "e-small",
    }
    code, checks = doctor({**base, "ORRERY_EMBEDDINGS_BASE_URL": "http://127.0.0.1:1/v1"})
    assert code == 1 and checks["embeddings"]["status"] == "DOWN", checks["embeddings"]
    assert "127.0.0.1:1" in checks["embeddings"]["detail"]

    with EmbeddingsServer(dimension=16) as server:
        code, checks = doctor(
            {**base, "ORRERY_EMBEDDINGS_BASE_URL": server.base_url, "ORRERY_EMBEDDINGS_DIMENSION": "16"}
        )
        assert checks["embeddings"]["status"] == "ok", checks["embeddings"]
        assert checks["embeddings"]["detail"] == "e-small: 16 dimensions, as configured"
        code, checks = doctor(
            {**base, "ORRERY_EMBEDDINGS_BASE_URL": server.base_url, "ORRERY_EMBEDDINGS_DIMENSION": "32"}
        )
        assert code == 1 and "set it to 16" in checks["embeddings"]["detail"], checks["embeddings"]


PRISMA_LEDGER = """
CREATE TABLE "_prisma_migrations" (
    "id" VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum" VARCHAR(64) NOT NULL,
    "finished_at" TIMESTAMPTZ,
    "migration_name" VARCHAR(255) NOT NULL,
    "logs" TEXT,
    "rolled_back_at" TIMESTAMPTZ,
    "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count" INTEGER NOT NULL DEFAULT 0
);
INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name, applied_steps_count)
VALUES ('00000000-0000-0000-0000-000000000000', 'baseline', now(), '0_init', 0);
"""
"""What `prisma migrate resolve --applied 0_init` leaves in `public` (Prisma Migrate's own DDL for its ledger)."""


async def test_doctor_stays_green_after_the_prisma_hand_over(
    empty_database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """The documented hand-over adds Prisma's ledger table to `public`: it is Prisma's bookkeeping, not drift, so
    Postgres stays ok (it was DOWN: "table _prisma_migrations is not in schema.prisma"), and a real drift still is
    reported."""
    conn = await connect(empty_database_url)
    try:
        await migrate(conn)
        await conn.execute(PRISMA_LEDGER)
    finally:
        await conn.close()
    env = {"DATABASE_URL": empty_database_url, "REDIS_URL": redis_url, "ORRERY_DATA_DIR": str(tmp_path)}
    code, checks = doctor({**env, "ORRERY_LLM": "scripted"})
    assert code == 0 and checks["Postgres"]["status"] == "ok", checks["Postgres"]

    conn = await connect(empty_database_url)
    try:
        await conn.execute("CREATE TABLE public.stray (id int)")
    finally:
        await conn.close()
    code, checks = doctor({**env, "ORRERY_LLM": "scripted"})
    assert code == 1 and "table stray is not in schema.prisma" in checks["Postgres"]["detail"], checks["Postgres"]
