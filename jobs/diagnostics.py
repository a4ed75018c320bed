"""`diag.echo`: a job that does nothing useful on purpose, for checking a deployment, the tests and the benchmark.

It can sleep, fail in each of the ways the runtime distinguishes, and leave a mark in Redis so a test can count how
many attempts started and how many finished.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.errors import DeferredError, PermanentError, TransientError
from jobs.runtime.context import JobContext
from jobs.runtime.keys import INTERACTIVE
from jobs.runtime.registry import JobSpec

MARK_PREFIX = "orrery:diag:"


class EchoArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sleep_s: float = Field(0.0, ge=0, le=3600, description="Sleep this long before answering.")
    fail_mode: Literal["none", "transient", "permanent", "deferred"] = "none"
    fail_attempts: int = Field(1_000, ge=0, description="Fail only while attempt <= this (then succeed).")
    defer_s: float = Field(1.0, ge=0, description="With fail_mode=deferred: run again this much later.")
    mark: str | None = Field(None, max_length=100, description="Count attempts in Redis under orrery:diag:{mark}:…")


def mark_keys(mark: str) -> tuple[str, str]:
    """(started counter, finished set) of a mark."""
    return f"{MARK_PREFIX}{mark}:started", f"{MARK_PREFIX}{mark}:finished"


async def echo(ctx: JobContext, args: EchoArgs) -> Mapping[str, Any]:
    """Sleep, optionally fail, answer with the attempt number.

    Idempotent: its only effect is adding the job id to a Redis set, which a second run of the same job repeats
    harmlessly; the started counter is a diagnostic of attempts, not an effect.
    """
    started_key, finished_key = mark_keys(args.mark) if args.mark else (None, None)
    if started_key:
        await ctx.redis.incr(started_key)
    if args.sleep_s:
        await asyncio.sleep(args.sleep_s)
    if args.fail_mode != "none" and ctx.attempt <= args.fail_attempts:
        message = f"diag.echo failing on purpose (fail_mode={args.fail_mode}, attempt {ctx.attempt})"
        if args.fail_mode == "transient":
            raise TransientError(message)
        if args.fail_mode == "permanent":
            raise PermanentError(message)
        raise DeferredError(message, datetime.now(UTC) + timedelta(seconds=args.defer_s))
    if finished_key:
        await ctx.redis.sadd(finished_key, ctx.job_id)  # type: ignore[misc]
    return {"attempt": ctx.attempt, "slept_s": args.sleep_s}


ECHO = JobSpec(
    name="diag.echo",
    args_model=EchoArgs,
    handler=echo,
    queue=INTERACTIVE,
    timeout_s=60,
    max_tries=3,
    backoff_s=0.2,
    dedupe_key=None,
    cron=None,
    description="Diagnostics: sleep, optionally fail on purpose, echo the attempt (tests, bench, smoke checks).",
)
