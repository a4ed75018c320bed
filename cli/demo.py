"""`demo`: the whole path on one machine — migrate, seed the sample user, sweep, ingest through a real worker, run a
growth cycle (insight → proactive prompts → cycle report → 3D projection), sync the graph and vector stores, show.

The worker is a `run.py worker --burst` subprocess on both queues, exactly what production runs, so the demo
exercises the arq queues, the ledger, the LLM layer, the outbox and the local embedding model rather than calling
the agents directly.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import typer
from redis.asyncio import Redis
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from cli.common import CommandError, backends, console, describe_backends, invocation, run_async, settings
from cli.demo_cycle import RECALL_QUERY, deliver_first_prompt, load_cycle, render_cycle
from cli.demo_report import load_report, render_report
from jobs.catalog import JOBS
from jobs.corrections import APPLY_CORRECTIONS
from jobs.cycle import STEPS, step_args
from jobs.maintenance import end_and_enqueue_ingestion
from jobs.runtime.enqueue import enqueue
from settings import Settings
from store import ledger
from store.cycles import read_cycle
from store.embedded import Backends
from store.migrate import migrate
from store.postgres import create_pool
from store.redis import connect_redis
from store.repos import derived_artifacts
from store.samples.loader import PORTUGUESE_SAMPLE_FILE, SampleError, seed_sample_interactions, seed_sample_user

ROOT = Path(__file__).resolve().parent.parent
WORKER_TIMEOUT_S = 600


def demo_command(
    concurrency: int = typer.Option(4, min=1, max=50, help="Jobs the demo worker runs at once."),
) -> None:
    """Seed the sample user, ingest their conversations and run a growth cycle through a real worker, then print what
    Orrery remembered, understood and would ask next.

    Without OPENAI_API_KEY / OPENAI_BASE_URL the demo's workers get ORRERY_LLM=scripted: a local scripted server
    answering from the shipped sample answers (said plainly in the output); with one, the configured model does the
    work. Running it again shows the same memory without new LLM calls (every step is idempotent); `run.py stack
    reset --yes` starts over.

    Examples:

    \b
      bash scripts/demo.sh
      run.py demo --concurrency 8
    """
    cfg = settings()
    found = backends()
    console.print(f"[bold]1/6[/] backends: {describe_backends(found)} (data in {cfg.resolved_data_dir})")
    scripted = not cfg.llm_configured or cfg.llm_is_scripted
    if scripted:
        console.print(
            "[yellow]LLM: scripted sample answers from agents/samples/ (ORRERY_LLM=scripted for the demo's workers: "
            "no OPENAI_API_KEY / OPENAI_BASE_URL is set); what you see below was not produced by a model.[/]"
        )
    else:
        console.print(f"LLM: {cfg.openai_base_url or 'https://api.openai.com/v1'}, model {cfg.ingestion_model}")
    run_async(_demo(cfg, found, concurrency, scripted))


async def _demo(cfg: Settings, found: Backends, concurrency: int, scripted: bool) -> None:
    pool = await create_pool(found.database_url, min_size=1, max_size=4)
    redis = await connect_redis(found.redis_url)
    run = invocation()
    try:
        async with pool.acquire() as conn:
            report = await migrate(conn)
        console.print(
            f"[bold]2/6[/] migrations: {len(report.applied)} applied now, {len(report.already_applied)} before"
        )

        seeded = await seed_sample_user(pool, redis, media_dir=cfg.resolved_media_root)
        other = await seed_sample_user(pool, redis, path=PORTUGUESE_SAMPLE_FILE, media_dir=cfg.resolved_media_root)
        for number, sample in (("3/6", seeded), ("   ", other)):
            console.print(
                f"[bold]{number}[/] sample user {sample.email}, id {sample.user_id}: {len(sample.conversations)} "
                f"conversations ({len(sample.created_keys)} new)",
                highlight=False,
            )

        swept = await end_and_enqueue_ingestion(
            pool, redis, timeout_minutes=cfg.conversation_timeout_minutes, limit=10_000
        )
        job_ids = swept.ingest_job_ids
        console.print(
            f"[bold]4/6[/] timeout sweep: {swept.ended} silent conversation(s) ended; "
            f"{len(job_ids)} ingestion job(s) queued"
        )

        if job_ids:
            dead, took = await _run_worker(pool, found, job_ids, concurrency, "5/6", "ingesting", scripted)
            console.print(f"ingested {len(job_ids) - len(dead)} conversation(s) in {took:.1f} s")
            if dead:
                console.print(f"[red]{len(dead)} not ingested[/]: `{run} jobs show {dead[0]}` says why")
        else:
            console.print("[bold]5/6[/] nothing to ingest: every sample conversation is already processed")
        await _revisit(pool, redis, found, cfg, concurrency, scripted)

        await _run_cycle(pool, redis, found, [seeded.user_id, other.user_id], concurrency, scripted)
        render_report(console, await load_report(pool, seeded.user_id))
        await _other_report(pool, other.email, other.user_id)
        delivery = await deliver_first_prompt(pool, seeded.user_id)  # as the web app does at the next conversation
        recalled, relationships = await _through_stores(cfg, pool, seeded.user_id)
        render_cycle(console, await load_cycle(pool, seeded.user_id, recalled, relationships, delivery))
        llm = "ORRERY_LLM=scripted " if scripted else ""
        user = seeded.user_id
        console.print('Next (README.md, "Walkthrough"):', highlight=False)
        for hint in (
            f"{llm}{run} worker    # keep a worker running (another terminal)",
            f"{run} trigger insight --arg user_id={user} --wait",
            f"{run} jobs runs --since 1h",
            f"{run} cycle show {user}",
            f"{run} memory history {user}",
            f'{run} recall --user {user} "running"',
        ):
            console.print(f"  {hint}", highlight=False, soft_wrap=True)
    finally:
        await redis.aclose()
        await pool.close()


async def _revisit(
    pool: asyncpg.Pool, redis: Redis, found: Backends, cfg: Settings, concurrency: int, scripted: bool
) -> None:
    """What the user does once their memory exists: a later conversation that retells a memory and changes a fact,
    then a correction and a reflection in the web app (written here as the web app would). Each once: a rerun of the
    demo finds them done and spends no LLM call."""
    later = await seed_sample_user(pool, redis, later=True)
    swept = await end_and_enqueue_ingestion(pool, redis, timeout_minutes=cfg.conversation_timeout_minutes, limit=10_000)
    if swept.ingest_job_ids:
        dead, _ = await _run_worker(
            pool, found, swept.ingest_job_ids, concurrency, "5/6", "a later conversation", scripted
        )
        console.print(f"ingested {len(swept.ingest_job_ids) - len(dead)} later conversation(s): memory revised")
    try:
        written = await seed_sample_interactions(pool, later.email)
    except SampleError as exc:
        raise CommandError(str(exc)) from None
    if written:
        job = await enqueue(redis, pool, APPLY_CORRECTIONS, {"user_id": later.user_id})
        dead, _ = await _run_worker(pool, found, [job.job_id], concurrency, "5/6", "the user's corrections", scripted)
        outcome = "applied in one LLM call" if not dead else f"not applied: `{invocation()} jobs show {job.job_id}`"
        console.print(f"{written} correction(s) and reflection(s) from the web app {outcome}")


async def _run_cycle(
    pool: asyncpg.Pool, redis: Redis, found: Backends, user_ids: list[str], concurrency: int, scripted: bool
) -> None:
    """The sample users' first growth cycle, once: a rerun of the demo shows the reports they already have (a new
    cycle would be an empty one, and the demo must change nothing when run again)."""
    chain: list[str] = []
    for user_id in user_ids:
        if await derived_artifacts.list_derived_artifacts(pool, user_id, artifact_type="cycle_report"):
            continue
        state = await read_cycle(pool, user_id)
        if state is None:
            raise CommandError(f"the sample user {user_id} disappeared")
        steps = [state.cycle.job_id(step) for step in STEPS]  # the chain as jobs/cycle.py declares it
        await enqueue(redis, pool, JOBS.get(STEPS[0]), step_args(state.cycle), job_id=steps[0])
        chain += steps
    if not chain:
        console.print("[bold]6/6[/] growth cycle: already reported (see below); the next one is due in a week")
        return
    dead, took = await _run_worker(pool, found, chain, concurrency, "6/6", "growth cycle", scripted)
    console.print(f"growth cycle: {' → '.join(STEPS)} in {took:.1f} s")
    if dead:
        console.print(f"[red]{len(dead)} step(s) did not succeed[/]: `{invocation()} jobs show {dead[0]}` says why")


async def _other_report(pool: asyncpg.Pool, email: str, user_id: str) -> None:
    """One line for the sample user who reads Portuguese: their cycle report, written in their language."""
    reports = await derived_artifacts.list_derived_artifacts(pool, user_id, artifact_type="cycle_report")
    if reports:
        console.print(f"Cycle report of {email} (pt-PT): {reports[0].title}", highlight=False)


async def _through_stores(cfg: Settings, pool: asyncpg.Pool, user_id: str) -> tuple[list[Any], dict[str, int]]:
    """A recall through the derived stores, with the configured embedder (the local model by default), and the
    relationships the graph holds of the user, per type."""
    from agents.embeddings import open_embedder
    from agents.llm import CallContext
    from store.graph import open_graph_store
    from store.llm_calls import PostgresCallLog
    from store.recall import Query, recall
    from store.vector import open_vector_store

    async with (
        open_embedder(cfg, PostgresCallLog(pool)) as embedder,
        open_graph_store(cfg, pool) as graph,
        open_vector_store(cfg, pool, embedder) as vector,
    ):
        [query] = await embedder.embed([RECALL_QUERY], context=CallContext(user_id=user_id, agent="demo"))
        queries = [Query("the query", query)]
        found = await recall(pool, vector, user_id, queries, weights=cfg.recall_weights, graph=graph, limit=5)
        counts = await graph.counts(user_id)
    return list(found), {kind.value: count for kind, count in counts.edges.items() if count}


async def _run_worker(
    pool: asyncpg.Pool, found: Backends, job_ids: list[str], concurrency: int, step: str, doing: str, scripted: bool
) -> tuple[list[str], float]:
    """Start `run.py worker --burst` (both queues: follow-ups such as the store sync run on the batch queue) and
    follow the ledger until the worker has exited; returns the jobs of `job_ids` that did not succeed, and the time.
    Without an LLM endpoint the worker is given the scripted one by name (a worker never picks it by itself)."""
    env = {**os.environ, "DATABASE_URL": found.database_url, "REDIS_URL": found.redis_url}
    if scripted:
        env["ORRERY_LLM"] = "scripted"
    env.setdefault("ORRERY_LOG_LEVEL", "WARNING")  # the progress bar is the demo's output; the ledger has details
    env.setdefault("ORRERY_PROJECTION_REFRESH_DELAY_S", "0")  # a burst worker would otherwise wait out the debounce
    if console.is_terminal:
        env.setdefault("ORRERY_LOG_FORMAT", "console")  # its lines are relayed to a person, not a log collector
    command = [sys.executable, str(ROOT / "run.py"), "worker", "--burst"]
    command += ["--concurrency", str(concurrency)]
    worker = await asyncio.create_subprocess_exec(*command, env=env, cwd=ROOT, stderr=asyncio.subprocess.PIPE)
    started = time.monotonic()
    with Progress(
        TextColumn(f"[bold]{step}[/] worker: {doing}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        relay = asyncio.create_task(_relay_lines(worker, progress))
        task = progress.add_task(doing, total=len(job_ids))
        while True:
            states = await ledger.latest_states(pool, job_ids)
            done = sum(state in ledger.FINAL_STATES for state in states.values())
            progress.update(task, completed=done)
            if worker.returncode is not None:
                break
            if time.monotonic() - started > WORKER_TIMEOUT_S:
                worker.terminate()
                raise CommandError(f"the demo worker did not finish in {WORKER_TIMEOUT_S} s; see `run.py jobs queues`")
            await asyncio.sleep(0.2)
        await relay
    code = await worker.wait()
    if code != 0:
        raise CommandError(f"the demo worker exited with code {code}; its error is printed above")
    states = await ledger.latest_states(pool, job_ids)
    dead = [job_id for job_id in job_ids if states.get(job_id) != "succeeded"]
    return dead, time.monotonic() - started


async def _relay_lines(worker: asyncio.subprocess.Process, progress: Progress) -> None:
    """The worker's log lines, printed above the progress bar (written straight to the terminal they would land
    inside it)."""
    assert worker.stderr is not None
    async for line in worker.stderr:
        progress.console.print(line.decode(errors="replace").rstrip(), highlight=False, markup=False, soft_wrap=True)
