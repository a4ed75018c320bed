"""The user's time: cycles turn at their local midnight and daily prompts come in their local morning, for users in
Kiritimati (UTC+14), Lisbon and Los Angeles and one whose stored zone is no zone (UTC, one warning per process).
Driven by the moment the job is given, never by the wall clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from core.local_time import local_date, local_hour, user_zone
from jobs.cycle_dispatch import CYCLE_DISPATCH, due_cycles
from jobs.proactive_prompts import PROACTIVE_PROMPTS_DAILY, DailyArgs, daily_job_id, enqueue_daily_prompts
from jobs.runtime.context import JobContext
from jobs.runtime.registry import JobSpec
from jobs.runtime.resources import WorkerResources
from store import ledger
from store.repos._base import to_db
from tests.jobs.cycle_seed import seed_user

ZONES = {"kiritimati": "Pacific/Kiritimati", "lisbon": "Europe/Lisbon", "la": "America/Los_Angeles", "bad": "Mars/Base"}
START = datetime(2026, 12, 7, 0, 7, tzinfo=UTC)  # each cycle closed seven minutes after a UTC midnight


def job_context(resources: WorkerResources, spec: JobSpec) -> JobContext:
    return JobContext(
        settings=resources.settings,
        pool=resources.pool,
        redis=resources.redis,
        job_id=spec.name,
        job_name=spec.name,
        attempt=1,
        log=structlog.get_logger("test"),
        resources=resources,
        spec=spec,
    )


async def users_in_zones(pool: asyncpg.Pool, **seed: object) -> dict[str, str]:
    ids = {}
    for where, zone in ZONES.items():
        user = await seed_user(pool, **seed)  # type: ignore[arg-type]
        await pool.execute("UPDATE users SET timezone = $2 WHERE user_id = $1", user.user_id, zone)
        ids[where] = user.user_id
    return ids


async def test_each_cycle_turns_at_its_user_s_local_midnight_and_a_bad_zone_is_utc_and_one_warning(
    pool: asyncpg.Pool, resources: WorkerResources
) -> None:
    ids = await users_in_zones(pool)
    await pool.execute(
        "UPDATE users SET last_cycle_started_at = $2 WHERE user_id = ANY($1)", list(ids.values()), to_db(START)
    )
    ctx = job_context(resources, CYCLE_DISPATCH)
    week = START.replace(minute=0) + timedelta(days=7)  # 14 December, 00:00 UTC
    expected = {
        week - timedelta(minutes=30): set(),
        week + timedelta(minutes=30): {"lisbon", "bad"},  # Lisbon is on UTC in December; the bad zone is UTC
        week + timedelta(hours=8, minutes=30): {"lisbon", "bad", "la"},  # midnight in Los Angeles is 08:00 UTC
        week + timedelta(hours=10, minutes=30): {"lisbon", "bad", "la", "kiritimati"},  # UTC+14, the next day's
    }
    with structlog.testing.capture_logs() as logs:
        for now, where in expected.items():
            due = {c.user_id for c in await due_cycles(ctx, now, limit=1000)}
            assert due & set(ids.values()) == {ids[w] for w in where}, now
    warnings = [line for line in logs if line["event"] == "user.timezone_unusable"]
    assert len(warnings) == 1  # four ticks, one line
    assert warnings[0]["user_id"] == ids["bad"] and "'Mars/Base' is not an IANA zone name" in warnings[0]["problem"]


async def test_daily_prompts_come_in_each_user_s_local_morning_keyed_by_their_local_day(
    pool: asyncpg.Pool, resources: WorkerResources
) -> None:
    ids = await users_in_zones(pool, cycle_age=timedelta(days=3), activity_age=timedelta(hours=2))
    now = datetime.now(UTC).replace(microsecond=0)  # the seeded activity is relative to it; the job is given it
    hour = local_hour(now, user_zone("Europe/Lisbon").zone)
    resources.settings = resources.settings.model_copy(update={"proactive_prompts_local_hour": hour})
    ctx = job_context(resources, PROACTIVE_PROMPTS_DAILY)

    result = await enqueue_daily_prompts(ctx, DailyArgs(at=now))

    morning = {w for w, zone in ZONES.items() if local_hour(now, user_zone(zone).zone) == hour}
    assert {"lisbon", "bad"} <= morning and "kiritimati" not in morning and "la" not in morning
    for where, zone in ZONES.items():
        job_id = daily_job_id(ids[where], local_date(now, user_zone(zone).zone))
        run = await ledger.latest_run(pool, job_id)
        assert (run is not None) == (where in morning), (where, job_id)
    assert result["users"] >= len(morning)  # other tests' users may share the database

    # hours later it is morning in Los Angeles, then in Kiritimati: each gets the run of their own day
    for where in ("la", "kiritimati"):
        their = user_zone(ZONES[where]).zone
        later = next(
            now + timedelta(hours=k) for k in range(1, 24) if local_hour(now + timedelta(hours=k), their) == hour
        )
        assert await ledger.latest_run(pool, daily_job_id(ids[where], local_date(later, their))) is None
        await enqueue_daily_prompts(ctx, DailyArgs(at=later))
        run = await ledger.latest_run(pool, daily_job_id(ids[where], local_date(later, their)))
        assert run is not None and run.args["daily"] == local_date(later, their).isoformat()
