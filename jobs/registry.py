"""The job table: every job declared once, and the arq worker settings, the CLI and the docs read from it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from jobs.keys import BATCH, INTERACTIVE, QUEUES

if TYPE_CHECKING:
    from jobs.context import JobContext

__all__ = ["BATCH", "INTERACTIVE", "QUEUES", "JobSpec", "UnknownJobError", "all_jobs", "get_job", "register"]

Handler = Callable[["JobContext", Any], Awaitable[Mapping[str, Any] | None]]
DeadHook = Callable[["JobContext", Any, str], Awaitable[None]]
"""on_dead(ctx, args, reason): the job's own cleanup when one of its runs becomes a dead letter."""


class UnknownJobError(LookupError):
    """A job name nobody registered; the message lists the known names."""


@dataclass(frozen=True)
class JobSpec:
    """One job: what it takes, where it runs, how long and how often it may try, and when cron fires it.

    `handler` receives the validated args model; what it returns (a small mapping of counts and ids, never
    conversation text) is stored in the ledger. `dedupe_key` is a str.format template over the args: it becomes the
    job id, so at most one run per key is queued or running at a time.
    """

    name: str
    args_model: type[BaseModel]
    handler: Handler
    queue: str
    timeout_s: float
    max_tries: int
    backoff_s: float
    dedupe_key: str | None
    cron: str | None
    description: str
    on_dead: DeadHook | None = None
    """Called by the runtime, once, on every path that makes a run dead (a permanent error, the last try spent, a
    timeout or an abandoned run on the last try, a record that cannot run but whose arguments still validate), with
    the validated args model and the one-line reason. The policy "what dead means for this job's entities" (e.g.
    ingestion marks its conversation `failed` so the timeout sweep stops re-enqueueing it) lives here, not in the
    handler's own except clauses. A hook that raises is logged; the run is dead all the same."""

    def __post_init__(self) -> None:
        if self.queue not in QUEUES:
            raise ValueError(f"job {self.name!r}: queue must be one of {', '.join(QUEUES)}, not {self.queue!r}")
        if self.timeout_s <= 0 or self.max_tries < 1 or self.backoff_s < 0:
            raise ValueError(f"job {self.name!r}: timeout_s > 0, max_tries >= 1 and backoff_s >= 0 are required")
        if self.args_model.model_config.get("extra") != "forbid":
            raise ValueError(f"job {self.name!r}: {self.args_model.__name__} must set extra='forbid'")

    @property
    def summary(self) -> str:
        """The first line of the description (`jobs list`)."""
        return self.description.strip().splitlines()[0] if self.description.strip() else ""

    def job_id_for(self, args: BaseModel) -> str | None:
        """The dedupe key formatted with the validated args, or None when the job has no dedupe key."""
        if self.dedupe_key is None:
            return None
        return self.dedupe_key.format(**args.model_dump(mode="json"))


_REGISTRY: dict[str, JobSpec] = {}


def register(spec: JobSpec) -> JobSpec:
    """Add a job to the module-level registry; a second job with the same name is a programming error."""
    if spec.name in _REGISTRY:
        raise ValueError(f"job {spec.name!r} is registered twice")
    if spec.cron is not None:
        from jobs.schedule import parse_cron

        parse_cron(spec.cron)  # a typo in a schedule fails at import, not at the first slot
    _REGISTRY[spec.name] = spec
    return spec


def get_job(name: str) -> JobSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise UnknownJobError(f"unknown job {name!r}; known jobs: {known}") from None


def all_jobs() -> list[JobSpec]:
    return sorted(_REGISTRY.values(), key=lambda spec: spec.name)
