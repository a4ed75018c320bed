"""Cron: every slot is enqueued by exactly one of several schedulers, and starting up fires nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import redis.asyncio as aioredis

from core.cron import ScheduleError
from jobs.diagnostics import ECHO
from jobs.maintenance import SWEEP_TIMEOUTS
from jobs.runtime import metrics
from jobs.runtime.enqueue import EnqueueResult
from jobs.runtime.keys import cron_claim_key
from jobs.runtime.registry import JobTable
from jobs.runtime.scheduler import CronScheduler, ScheduledJob, cron_job_id, schedules
from settings import SettingsError, load_settings
from store import ledger
from tests.jobs.testjobs import TEST_JOBS


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def test_effective_schedules_with_overrides() -> None:
    default = {job.spec.name: job.schedule.expression for job in schedules(TEST_JOBS, {})}
    assert default["sweep_timeouts"] == "* * * * *" and "diag.echo" not in default

    overridden = {
        job.spec.name: job.schedule.expression
        for job in schedules(
            TEST_JOBS, {"sweep_timeouts": "*/2 * * * *", "prune_ledger": "off", "diag.echo": "* * * * *"}
        )
    }
    assert overridden["sweep_timeouts"] == "*/2 * * * *" and overridden["diag.echo"] == "* * * * *"
    assert "prune_ledger" not in overridden


def test_overrides_must_name_real_jobs_that_take_no_required_arguments() -> None:
    with pytest.raises(
        ScheduleError,
        match=r"^invalid configuration: ORRERY_CRON: unknown job .sweep.; did you mean .*known jobs: .*sweep_timeouts",
    ):
        schedules(TEST_JOBS, {"sweep": "* * * * *"})
    with pytest.raises(
        ScheduleError, match=r"^invalid configuration: ORRERY_CRON: job 'test\.needs-args' needs arguments"
    ):
        schedules(TEST_JOBS, {"test.needs-args": "* * * * *"})
    with pytest.raises(ScheduleError, match=r"^invalid configuration: ORRERY_CRON: 'prune_ledger': minute field '61'"):
        schedules(TEST_JOBS, {"prune_ledger": "61 * * * *"})


def test_cron_overrides_are_a_validated_field_of_the_one_settings_object() -> None:
    cfg = load_settings(cron='{"sweep_timeouts": "*/2 * * * *", "prune_ledger": " OFF "}')
    assert cfg.cron == {"sweep_timeouts": "*/2 * * * *", "prune_ledger": " OFF "}
    assert load_settings(cron="").cron == {} and load_settings().cron == {}
    with pytest.raises(SettingsError, match=r"^invalid configuration: ORRERY_CRON: Value error, not valid JSON"):
        load_settings(cron="{not json")
    with pytest.raises(SettingsError, match=r"ORRERY_CRON: Value error, 'sweep_timeouts': cron '\* \*': expected 5"):
        load_settings(cron='{"sweep_timeouts": "* *"}')
    with pytest.raises(SettingsError, match=r"ORRERY_CRON\['prune_ledger'\]: Input should be a valid string"):
        load_settings(cron='{"prune_ledger": 5}')
    with pytest.raises(SettingsError, match="ORRERY_CRON: Input should be a valid dictionary"):
        load_settings(cron='["prune_ledger"]')


async def test_each_slot_fires_once_across_schedulers(pool: asyncpg.Pool, redis_client: aioredis.Redis) -> None:
    start = datetime(2026, 1, 5, 9, 30, 0, 400_000, tzinfo=UTC)
    [echo] = [job for job in schedules(TEST_JOBS, {"diag.echo": "* * * * * *"}) if job.spec.name == ECHO.name]
    jobs = [ScheduledJob(ECHO, echo.schedule)]
    clocks = [Clock(start), Clock(start + timedelta(milliseconds=150))]  # two workers, clocks slightly apart
    workers = [CronScheduler(redis_client, pool, jobs, clock=clock) for clock in clocks]

    assert [await w.tick() for w in workers] == [[], []]  # start-up: the current second's slot is not fired

    fired: list[str] = []
    for step in range(1, 6):
        for worker, clock in zip(workers, clocks, strict=True):
            clock.now = start + timedelta(seconds=step, milliseconds=clocks.index(clock) * 150)
            fired += [r.job_id for r in await worker.tick() if r.enqueued]

    expected = [cron_job_id(jobs[0].spec, start.replace(microsecond=0) + timedelta(seconds=s)) for s in range(1, 6)]
    assert sorted(fired) == expected
    for job_id in expected:
        assert len(await ledger.runs_of(pool, job_id)) == 1


async def test_overrunning_job_with_a_dedupe_key_skips_the_next_slot(
    pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    start = datetime(2026, 1, 5, 9, 30, 30, tzinfo=UTC)
    clock = Clock(start)
    jobs = schedules(JobTable([SWEEP_TIMEOUTS]), {})
    scheduler = CronScheduler(redis_client, pool, jobs, clock=clock)

    fired = metrics.CRON_FIRED.labels("sweep_timeouts")
    before = fired._value.get()
    clock.now = start + timedelta(minutes=1)
    first = await scheduler.tick()
    clock.now = start + timedelta(minutes=2)
    second = await scheduler.tick()

    assert [r.enqueued for r in first] == [True] and [r.enqueued for r in second] == [False]
    assert first[0].job_id == "sweep_timeouts"
    assert fired._value.get() - before == 1  # the skipped slot enqueued nothing: orrery_cron_fired_total says so


async def test_a_slot_whose_enqueue_fails_is_retried_until_the_next_slot(
    database_url: str, pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    """Postgres away when a slot comes: the slot stays due and fires on a later tick once Postgres answers, once;
    a slot still unfired when the following one comes is given up for it (its claim released), never replayed."""
    start = datetime(2026, 1, 5, 9, 30, 30, tzinfo=UTC)
    clock = Clock(start)
    jobs = schedules(JobTable([ECHO]), {"diag.echo": "* * * * *"})
    closed = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    await closed.close()  # every query on it fails, as on a Postgres that is away
    scheduler = CronScheduler(redis_client, closed, jobs, clock=clock)

    clock.now = datetime(2026, 1, 5, 9, 31, 1, tzinfo=UTC)
    assert await scheduler.tick() == []
    clock.now = datetime(2026, 1, 5, 9, 31, 20, tzinfo=UTC)
    assert await scheduler.tick() == []  # still away
    scheduler._pool = pool  # Postgres is back
    clock.now = datetime(2026, 1, 5, 9, 31, 40, tzinfo=UTC)
    fired = await scheduler.tick()
    assert [r.job_id for r in fired] == ["diag.echo@20260105T093100Z"] and fired[0].enqueued
    assert await scheduler.tick() == []

    scheduler._pool = closed
    clock.now = datetime(2026, 1, 5, 9, 32, 5, tzinfo=UTC)
    assert await scheduler.tick() == []  # 9:32 not fired yet
    scheduler._pool = pool
    clock.now = datetime(2026, 1, 5, 9, 33, 2, tzinfo=UTC)  # 9:33 came first: 9:32 is given up, 9:33 fires
    assert [r.job_id for r in await scheduler.tick()] == ["diag.echo@20260105T093300Z"]
    clock.now = datetime(2026, 1, 5, 9, 34, 0, tzinfo=UTC)
    assert [r.job_id for r in await scheduler.tick()] == ["diag.echo@20260105T093400Z"]
    assert await redis_client.exists(cron_claim_key("diag.echo", datetime(2026, 1, 5, 9, 32, tzinfo=UTC))) == 0


async def test_a_slot_that_cannot_fire_backs_off_instead_of_spinning(
    database_url: str, pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    """Issue 18, defect 7: with Postgres away the loop retried every 10 ms (5,732 warnings in 49 s). Now a failed
    slot is tried again after 0.5, 1, 2 … s (at most 15 s apart), and the loop sleeps until then."""
    start = datetime(2026, 1, 5, 9, 30, 30, tzinfo=UTC)
    clock = Clock(start)
    jobs = schedules(JobTable([ECHO]), {"diag.echo": "* * * * *"})
    closed = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    await closed.close()
    scheduler = CronScheduler(redis_client, closed, jobs, clock=clock, rng=lambda: 1.0)
    tries = 0
    fire = scheduler._fire

    async def counted(job: ScheduledJob, slot: datetime) -> EnqueueResult | None:
        nonlocal tries
        tries += 1
        return await fire(job, slot)

    scheduler._fire = counted  # type: ignore[method-assign]
    clock.now = datetime(2026, 1, 5, 9, 31, 0, tzinfo=UTC)
    for _ in range(4900):  # 49 s of a loop that ticks every 10 ms
        await scheduler.tick()
        clock.now += timedelta(milliseconds=10)
    assert 5 <= tries <= 10, tries  # 0.5 + 1 + 2 + 4 + 8 + 15 + 15 … s
    wake = scheduler.next_wake()
    assert wake is not None and (wake - clock.now).total_seconds() > 1  # the loop sleeps until the retry

    scheduler._pool = pool  # Postgres is back
    clock.now += timedelta(seconds=15)  # 9:32:04: the 9:31 slot is given up for the 9:32 one
    assert [r.job_id for r in await scheduler.tick()] == ["diag.echo@20260105T093200Z"]
    assert scheduler.next_wake() == datetime(2026, 1, 5, 9, 33, tzinfo=UTC)  # the next slot; no backoff left


async def test_the_cron_loop_does_not_spin_while_postgres_is_away(
    database_url: str, redis_client: aioredis.Redis
) -> None:
    """The loop itself, in real time: a slot that keeps failing is tried a handful of times in a second, not 100."""
    jobs = schedules(JobTable([ECHO]), {"diag.echo": "* * * * *"})
    closed = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    await closed.close()
    started = datetime.now(UTC)
    scheduler = CronScheduler(redis_client, closed, jobs, clock=lambda: datetime.now(UTC) + timedelta(minutes=1))
    tries = 0
    tried = asyncio.Event()
    fire = scheduler._fire

    async def counted(job: ScheduledJob, slot: datetime) -> EnqueueResult | None:
        nonlocal tries
        tries += 1
        tried.set()
        return await fire(job, slot)

    scheduler._fire = counted  # type: ignore[method-assign]
    stop = asyncio.Event()
    running = asyncio.create_task(scheduler.run(stop))
    await tried.wait()
    await asyncio.sleep(1.0)
    stop.set()
    await running
    elapsed = (datetime.now(UTC) - started).total_seconds()
    assert tries <= 3 + elapsed, (tries, elapsed)  # 0.5 s then 1 s between tries; a spinning loop makes ~100
