"""`run.py cycle show USER` and `run.py cycle resume USER`: an operator sees each step of a user's current and
recent cycles and resumes the cycle in one command (issue 18)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import asyncpg

from core.cycle import Cycle
from store import ledger
from tests.cli.runner import assert_one_line_error, run_cli
from tests.jobs.conftest import cli_env
from tests.jobs.cycle_seed import seed_user

DAY = timedelta(days=1)


async def record(pool: asyncpg.Pool, cycle: Cycle, step: str, state: str, error: str | None = None) -> None:
    """A finished run of `step` for `cycle`, as the runtime records one."""
    await pool.execute(
        "INSERT INTO runtime.job_runs (job_id, job_name, queue, args, state, attempt, max_tries, error_class, error, "
        "result, finished_at) VALUES ($1, $2, 'batch', $3, $4, 1, 5, $5, $6, $7, now())",
        cycle.job_id(step),
        step,
        {"user_id": cycle.user_id, "cycle_start": cycle.start.isoformat()},
        state,
        "PermanentError" if error else None,
        error,
        None if error else {"outcome": "written"},
    )


async def test_an_operator_sees_the_users_cycles_and_resumes_the_dead_step(
    database_url: str, redis_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    user = await seed_user(pool, cycle_age=8 * DAY)
    current = Cycle.of(user.user_id, user.cycle_start)
    past = Cycle.of(user.user_id, user.cycle_start - 7 * DAY)
    for step in ("insight", "proactive_prompts", "cycle_report", "projection"):
        await record(pool, past, step, "succeeded")
    await record(pool, current, "insight", "succeeded")
    await record(pool, current, "proactive_prompts", "dead", "the answer names m999, which it was not shown")
    env = cli_env(database_url, redis_url, tmp_path)

    shown = run_cli("cycle", "show", user.user_id, "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    assert [c["cycle"] for c in view["cycles"]] == [current.stamp, past.stamp]
    assert [c["current"] for c in view["cycles"]] == [True, False]
    steps = {s["step"]: s for s in view["cycles"][0]["steps"]}
    assert [steps[s]["state"] for s in ("insight", "proactive_prompts", "cycle_report", "projection")] == [
        "succeeded",
        "dead",
        None,
        None,
    ]
    assert steps["proactive_prompts"]["job_id"] == current.job_id("proactive_prompts")
    assert "m999" in steps["proactive_prompts"]["error"]
    assert view["resume"] == {"cycle": current.stamp, "step": "proactive_prompts"}
    text = run_cli("cycle", "show", user.user_id, env=env)
    assert f"cycle {current.stamp} (current" in text.stdout and "PermanentError" in text.stdout, text.stdout
    assert f"would run proactive_prompts of cycle {current.stamp}" in text.stdout

    resumed = json.loads(run_cli("cycle", "resume", user.user_id, "--json", env=env).stdout)
    assert resumed["job_id"] == current.job_id("proactive_prompts") and resumed["enqueued"] is True
    assert resumed["reason"].startswith("it died: PermanentError")
    run = await ledger.latest_run(pool, current.job_id("proactive_prompts"))
    assert run is not None and run.state == "queued" and run.args["cycle_start"] is not None
    again = run_cli("cycle", "resume", user.user_id, env=env)
    assert again.returncode == 0 and "already queued or running" in again.stdout, again.stdout

    nothing = run_cli("cycle", "resume", user.user_id, "--cycle", past.stamp, env=env)
    assert nothing.returncode == 0 and "nothing to resume" in nothing.stdout, nothing.stdout


async def test_bad_input_is_one_line(database_url: str, redis_url: str, pool: asyncpg.Pool, tmp_path: Path) -> None:
    user = await seed_user(pool, cycle_age=2 * DAY)
    env = cli_env(database_url, redis_url, tmp_path)
    assert_one_line_error(run_cli("cycle", "show", "nobody-here", env=env), "no user 'nobody-here'")
    assert_one_line_error(
        run_cli("cycle", "resume", user.user_id, "--cycle", "last-week", env=env), "is not a cycle stamp"
    )
    later = Cycle.of(user.user_id, user.cycle_start + 7 * DAY).stamp
    assert_one_line_error(
        run_cli("cycle", "resume", user.user_id, "--cycle", later, env=env), "after the user's current cycle"
    )
    assert_one_line_error(run_cli("cycle", "show", "", env=env), "expected a user id")
    quiet = run_cli("cycle", "resume", user.user_id, env=env)  # the cycle is not due and nothing of it ran
    assert quiet.returncode == 0 and "nothing to resume" in quiet.stdout, quiet.stdout
    helped = run_cli("cycle", "--help", env=env)
    assert helped.returncode == 0 and "show" in helped.stdout and "resume" in helped.stdout
