"""The job table: every job declared once, and the arq worker settings, the CLI and the docs read from it."""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from core.cron import parse_cron
from jobs.runtime.keys import BATCH, INTERACTIVE, QUEUES

if TYPE_CHECKING:
    from jobs.runtime.context import JobContext
    from jobs.runtime.resources import Resource
    from store.postgres import Executor

__all__ = ["BATCH", "INTERACTIVE", "QUEUES", "JobIdentity", "JobSpec", "JobTable", "UnknownJobError"]

Handler = Callable[["JobContext", Any], Awaitable[Mapping[str, Any] | None]]
DeadHook = Callable[["JobContext", Any, str], Awaitable[None]]
"""on_dead(ctx, args, reason): the job's own cleanup when one of its runs becomes a dead letter."""


class UnknownJobError(LookupError):
    """A job name nobody registered; the message lists the known names."""


def unknown_job_message(name: str, known: Iterable[str]) -> str:
    """`unknown job 'ingset'; did you mean 'ingest'? known jobs: …`: the close names first (difflib), then all."""
    names = sorted(known)
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(repr(each) for each in close)}? " if close else ""
    return f"unknown job {name!r}; {hint}known jobs: {', '.join(names) or 'none'}"


@dataclass(frozen=True)
class JobIdentity:
    """A job id that needs the database: a step of the cycle chain is named after the user's current cycle, which an
    argument may leave out (`--arg user_id=U` means "the current cycle"). `enqueue` calls `resolve(db, args)` when
    no job id is given and enqueues the completed arguments under the id it returns, so a run started by hand and
    one started by the chain share one id and deduplicate."""

    pattern: str
    """What the id looks like, for `jobs list` and the docs: `insight:{user_id}:{cycle}`."""
    resolve: Callable[[Executor, Any], Awaitable[tuple[BaseModel, str]]]
    """(the arguments completed, the job id); raises ValueError with one clear line when it cannot name the run."""


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
    timeout or an abandoned run on the last try), with the validated args model and the one-line reason; never for
    a record that never ran (NotRunnable), which changes no domain row. The policy "what dead means for this job's
    entities" (e.g. ingestion marks its conversation `failed` so the timeout sweep stops re-enqueueing it) lives
    here, not in the handler's own except clauses. A hook that raises is logged; the run is dead all the same."""
    resources: tuple[Resource[Any], ...] = ()
    """What the handler takes from `ctx.resource(...)` (jobs/resources.py): opened on first use, once per process."""
    identity: JobIdentity | None = None
    """For a job whose id depends on the database (then `dedupe_key` is None); see JobIdentity."""

    def __post_init__(self) -> None:
        if self.queue not in QUEUES:
            raise ValueError(f"job {self.name!r}: queue must be one of {', '.join(QUEUES)}, not {self.queue!r}")
        if self.timeout_s <= 0 or self.max_tries < 1 or self.backoff_s < 0:
            raise ValueError(f"job {self.name!r}: timeout_s > 0, max_tries >= 1 and backoff_s >= 0 are required")
        if self.dedupe_key is not None and self.identity is not None:
            raise ValueError(f"job {self.name!r}: give a dedupe_key or an identity, not both")
        if self.args_model.model_config.get("extra") != "forbid":
            raise ValueError(f"job {self.name!r}: {self.args_model.__name__} must set extra='forbid'")

    @property
    def summary(self) -> str:
        """The first line of the description (`jobs list`)."""
        return self.description.strip().splitlines()[0] if self.description.strip() else ""

    @property
    def id_pattern(self) -> str | None:
        """How the job's runs are named when no id is given (`jobs list`, the docs); None: a random id."""
        return self.identity.pattern if self.identity is not None else self.dedupe_key

    def job_id_for(self, args: BaseModel) -> str | None:
        """The dedupe key formatted with the validated args, or None when the job has no dedupe key (a job with an
        identity is named by `enqueue`, which reads the database)."""
        if self.dedupe_key is None:
            return None
        return self.dedupe_key.format(**args.model_dump(mode="json"))


class JobTable:
    """The jobs one worker or CLI knows: built from an explicit list (jobs/catalog.py), never from import side effects.

    Tests build their own table (the catalog's jobs plus test-only ones) instead of adding to a global one.
    """

    def __init__(self, specs: Iterable[JobSpec]) -> None:
        self._specs: dict[str, JobSpec] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise ValueError(f"job {spec.name!r} is listed twice")
            if spec.cron is not None:
                parse_cron(spec.cron)  # a typo in a schedule fails when the table is built, not at the first slot
            self._specs[spec.name] = spec

    def get(self, name: str) -> JobSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownJobError(unknown_job_message(name, self._specs)) from None

    def all(self) -> list[JobSpec]:
        return sorted(self._specs.values(), key=lambda spec: spec.name)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def with_jobs(self, *specs: JobSpec) -> JobTable:
        """This table plus `specs` (a test's own jobs)."""
        return JobTable([*self._specs.values(), *specs])
