"""`demo`: the whole path on one machine — migrate, seed the sample user, sweep, ingest through a real worker, show.

The worker is a `run.py worker --burst` subprocess, exactly what production runs, so the demo exercises the arq
queue, the ledger and the LLM layer rather than calling the agent directly.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import asyncpg
import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from cli.common import CommandError, backends, console, describe_backends, run_async, settings
from cli.demo_report import load_report, render_report
from jobs.maintenance import end_and_enqueue_ingestion
from jobs.runtime.keys import INTERACTIVE
from settings import Settings
from store import ledger
from store.embedded import Backends
from store.migrate import migrate
from store.postgres import create_pool
from store.redis import connect_redis
from store.samples.loader import seed_sample_user

ROOT = Path(__file__).resolve().parent.parent
WORKER_TIMEOUT_S = 600


def demo_command(
    concurrency: int = typer.Option(4, min=1, max=50, help="Jobs the demo worker runs at once."),
) -> None:
    """Seed the sample user, ingest their conversations through a real worker and print what Orrery remembered.

    Without OPENAI_API_KEY / OPENAI_BASE_URL the LLM is a local scripted server answering from the shipped sample
    answers (said plainly in the output); with one, the configured model does the work. Running it again shows the
    same memory without new LLM calls (every step is idempotent); `run.py stack reset --yes` starts over.
    """
    cfg = settings()
    found = backends()
    console.print(f"[bold]1/5[/] backends: {describe_backends(found)} (data in {cfg.resolved_data_dir})")
    if cfg.llm_is_scripted:
        console.print(
            "[yellow]LLM: scripted sample answers from agents/samples/ (no OPENAI_API_KEY / OPENAI_BASE_URL set); "
            "what you see below was not produced by a model.[/]"
        )
    else:
        console.print(f"LLM: {cfg.openai_base_url or 'https://api.openai.com/v1'}, model {cfg.ingestion_model}")
    run_async(_demo(cfg, found, concurrency))


async def _demo(cfg: Settings, found: Backends, concurrency: int) -> None:
    pool = await create_pool(found.database_url, min_size=1, max_size=4)
    redis = await connect_redis(found.redis_url)
    try:
        async with pool.acquire() as conn:
            report = await migrate(conn)
        console.print(
            f"[bold]2/5[/] migrations: {len(report.applied)} applied now, {len(report.already_applied)} before"
        )

        seeded = await seed_sample_user(pool, redis)
        console.print(
            f"[bold]3/5[/] sample user {seeded.email}: {len(seeded.conversations)} conversations "
            f"({len(seeded.created_keys)} new)"
        )

        swept = await end_and_enqueue_ingestion(
            pool, redis, timeout_minutes=cfg.conversation_timeout_minutes, limit=10_000
        )
        job_ids = swept.ingest_job_ids
        console.print(
            f"[bold]4/5[/] timeout sweep: {swept.ended} silent conversation(s) ended; "
            f"{len(job_ids)} ingestion job(s) queued"
        )

        if job_ids:
            await _run_worker(pool, found, job_ids, concurrency)
        else:
            console.print("[bold]5/5[/] nothing to ingest: every sample conversation is already processed")

        render_report(console, await load_report(pool, seeded.user_id))
        console.print(
            "Next: `python run.py jobs failed`, `python run.py trigger ingest --arg conversation_id=… "
            "--arg reprocess=true`, `python run.py worker` to keep a worker running."
        )
    finally:
        await redis.aclose()
        await pool.close()


async def _run_worker(pool: asyncpg.Pool, found: Backends, job_ids: list[str], concurrency: int) -> None:
    """Start `run.py worker --burst` and follow the ledger until every queued job has finished."""
    env = {**os.environ, "DATABASE_URL": found.database_url, "REDIS_URL": found.redis_url}
    env.setdefault("ORRERY_LOG_LEVEL", "WARNING")  # the progress bar is the demo's output; the ledger has details
    command = [sys.executable, str(ROOT / "run.py"), "worker", "--queue", INTERACTIVE, "--burst"]
    command += ["--concurrency", str(concurrency)]
    worker = await asyncio.create_subprocess_exec(*command, env=env, cwd=ROOT)
    started = time.monotonic()
    with Progress(
        TextColumn("[bold]5/5[/] worker: ingesting"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("ingest", total=len(job_ids))
        while True:
            states = await ledger.latest_states(pool, job_ids)
            done = sum(state in ledger.FINAL_STATES for state in states.values())
            progress.update(task, completed=done)
            if worker.returncode is not None or done == len(job_ids):
                break
            if time.monotonic() - started > WORKER_TIMEOUT_S:
                worker.terminate()
                raise CommandError(f"the demo worker did not finish in {WORKER_TIMEOUT_S} s; see `run.py jobs queues`")
            await asyncio.sleep(0.2)
    code = await worker.wait()
    if code != 0:
        raise CommandError(f"the demo worker exited with code {code}; its error is printed above")
    states = await ledger.latest_states(pool, job_ids)
    dead = [job_id for job_id in job_ids if states.get(job_id) != "succeeded"]
    console.print(f"ingested {len(job_ids) - len(dead)} conversation(s) in {time.monotonic() - started:.1f} s")
    if dead:
        console.print(f"[red]{len(dead)} not ingested[/]: `python run.py jobs show {dead[0]}` says why")
