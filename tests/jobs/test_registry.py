"""JobSpec rules and the JobTable (jobs/runtime/registry.py), pure."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict

from core.cron import ScheduleError
from jobs.runtime.keys import INTERACTIVE
from jobs.runtime.registry import JobSpec, JobTable, UnknownJobError
from tests.jobs.testjobs import TEST_JOBS


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")
    conversation_id: str


async def _handler(ctx: object, args: _Args) -> None:
    return None


def _spec(**overrides: object) -> JobSpec:
    fields: dict[str, object] = {
        "name": "test.registry",
        "args_model": _Args,
        "handler": _handler,
        "queue": INTERACTIVE,
        "timeout_s": 1,
        "max_tries": 1,
        "backoff_s": 0,
        "dedupe_key": "thing:{conversation_id}",
        "cron": None,
        "description": "x",
    }
    fields.update(overrides)
    return JobSpec(**fields)  # type: ignore[arg-type]


def test_spec_rules() -> None:
    assert _spec().job_id_for(_Args(conversation_id="c1")) == "thing:c1"
    with pytest.raises(ValueError, match="queue must be one of"):
        _spec(queue="urgent")
    with pytest.raises(ValueError, match="extra='forbid'"):
        _spec(args_model=BaseModel)


def test_job_table_refuses_duplicates_and_bad_cron_and_names_the_known_jobs() -> None:
    with pytest.raises(ValueError, match="listed twice"):
        TEST_JOBS.with_jobs(_spec(name="diag.echo"))
    with pytest.raises(UnknownJobError, match=r"known jobs: .*sweep_timeouts"):
        TEST_JOBS.get("ingest-typo")
    with pytest.raises(ScheduleError):
        JobTable([_spec(name="test.bad-cron", cron="every minute")])
