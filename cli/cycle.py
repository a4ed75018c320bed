"""`cycle show USER` and `cycle resume USER`: a user's growth cycles, step by step, and one command to go on.

The workflow itself (the chain, its plan, its dead policy) is jobs/cycle.py; these commands only read it and
present it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer

from cli.common import CommandError, console, fail, hint, migrated, print_json, run_async, settings
from cli.tables import Col, show, styled
from jobs.cycle import STEPS, CycleHistory, CycleStatus, cycle_history, resume_step, to_resume
from store.ledger import JobRun
from store.postgres import create_pool
from store.redis import connect_redis

if TYPE_CHECKING:
    from store.embedded import Backends

cycle_app = typer.Typer(
    help="A user's growth cycle: each step's state for the current and recent cycles, and resuming it.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

USER_HELP = "The user's id (users.user_id)."


def _check_user(user: str) -> None:
    if not user.strip() or "\x00" in user or len(user) > 200:
        fail(f"USER {user[:80]!r}: expected a user id")


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if moment else None


def _step_json(step: str, status: CycleStatus) -> dict[str, Any]:
    run = status.runs[step]
    base: dict[str, Any] = {"step": step, "job_id": status.cycle.job_id(step)}
    if run is None:
        return {**base, "state": None}
    return {
        **base,
        "state": run.state,
        "attempt": run.attempt,
        "max_tries": run.max_tries,
        "outcome": (run.result or {}).get("outcome"),
        "error_class": run.error_class,
        "error": run.error,
        "finished_at": _iso(run.finished_at),
    }


def _history_json(history: CycleHistory, resume: tuple[CycleStatus, str] | None) -> dict[str, Any]:
    return {
        "user_id": history.state.user_id,
        "current_cycle": history.state.cycle.stamp,
        "due_at": _iso(history.due_at),
        "cycles": [
            {
                "cycle": status.cycle.stamp,
                "start": _iso(status.cycle.start),
                "current": status.current,
                "steps": [_step_json(step, status) for step in STEPS],
            }
            for status in history.cycles
        ],
        "resume": {"cycle": resume[0].cycle.stamp, "step": resume[1]} if resume else None,
    }


def _describe(run: JobRun | None) -> tuple[str, str]:
    if run is None:
        return "[dim]not run[/]", ""
    colour = {"succeeded": "green", "dead": "red", "failed": "yellow"}.get(run.state, "cyan")
    state = f"[{colour}]{run.state}[/] ({run.attempt}/{run.max_tries})"
    if run.state == "dead":
        return state, f"{run.error_class}: {run.error}"
    outcome = (run.result or {}).get("outcome")
    return state, str(outcome) if outcome else (run.error or "")


async def _history(database_url: str, user: str, recent: int, stamp: str | None) -> CycleHistory:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        try:
            history = await cycle_history(
                pool, user, recent=recent, length_days=settings().cycle_length_days, stamp=stamp
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
    finally:
        await pool.close()
    if history is None:
        raise CommandError(f"no user {user!r} in the database")
    return history


@cycle_app.command("show")
def show_command(
    user: str = typer.Argument(..., help=USER_HELP),
    recent: int = typer.Option(3, "--recent", "-n", min=0, max=50, help="Earlier cycles to show besides the current."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Each step of the chain (insight → proactive_prompts → cycle_report → projection) for USER's current cycle
    and recent ones: its newest run's state, tries, outcome or error. Ends with what `cycle resume` would run.

    Examples:

    \b
      run.py cycle show u_123
      run.py cycle show u_123 --recent 10 --json
    """
    _check_user(user)
    history = run_async(_history(migrated().database_url, user, recent, None))  # the check runs its own loop
    resume = to_resume(history, datetime.now(UTC))
    if as_json:
        print_json(_history_json(history, resume))
        return
    columns = [Col("step", key=True), Col("state"), Col("outcome / error")]
    for status in history.cycles:
        when = f"current, due {_iso(history.due_at)}" if status.current else "closed"
        rows = []
        for step in STEPS:
            state, detail = _describe(status.runs[step])
            rows.append((step, styled(state), detail))
        show(console, columns, rows, title=f"cycle {status.cycle.stamp} ({when})")
    if resume is None:
        console.print("nothing to resume: every step of these cycles has succeeded or not yet begun")
    else:
        hint(f"`run.py cycle resume {user}` would run {resume[1]} of cycle {resume[0].cycle.stamp}")


@cycle_app.command("resume")
def resume_command(
    user: str = typer.Argument(..., help=USER_HELP),
    cycle: str | None = typer.Option(
        None, "--cycle", help="The cycle, by its stamp (20261119T000000Z); default: the newest with a step to run."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Run USER's cycle on from its first step that has not succeeded (a dead one, or one that never ran), under
    the step's own job id; the chain then goes on by itself and runs again what died after that step. A step
    already queued or running is left alone. Exit 0 also when there is nothing to resume.

    Examples:

    \b
      run.py cycle resume u_123
      run.py cycle resume u_123 --cycle 20261119T000000Z --json
    """
    _check_user(user)
    outcome = run_async(_resume(migrated(), user, cycle))  # the check runs its own loop
    if as_json:
        print_json(outcome)
    elif outcome["job_id"] is None:
        console.print(f"nothing to resume for user {user}: {outcome['reason']}")
    elif outcome["enqueued"]:
        console.print(outcome["job_id"], highlight=False)
        console.print(f"enqueued {outcome['step']} of cycle {outcome['cycle']} ({outcome['reason']})", highlight=False)
    else:
        console.print(outcome["job_id"], highlight=False)
        console.print(f"not enqueued: {outcome['job_id']} is already queued or running", highlight=False)


async def _resume(stack: Backends, user: str, stamp: str | None) -> dict[str, Any]:
    from jobs.catalog import JOBS

    history = await _history(stack.database_url, user, 10, stamp)
    found = to_resume(history, datetime.now(UTC), stamp)
    if found is None:
        reason = f"every step of cycle {stamp} has succeeded" if stamp else "no recent cycle has a step left to run"
        return {"user_id": user, "cycle": stamp, "step": None, "job_id": None, "enqueued": False, "reason": reason}
    status, step = found
    run = status.runs[step]
    reason = f"it died: {run.error_class}: {run.error}" if run is not None and run.state == "dead" else "not run yet"
    if run is not None and run.state not in ("dead", "succeeded"):
        reason = f"it is {run.state}"
    pool = await create_pool(stack.database_url, min_size=1, max_size=2)
    redis = await connect_redis(stack.redis_url)
    try:
        result = await resume_step(redis, pool, JOBS, status.cycle, step)
    finally:
        await redis.aclose()
        await pool.close()
    return {
        "user_id": user,
        "cycle": status.cycle.stamp,
        "step": step,
        "job_id": result.job_id,
        "enqueued": result.enqueued,
        "reason": reason,
    }
