"""The slice_note job: a note in, NoteAgent's title, mood and tags kept as a derived artifact; a dead note is marked.

Thin like every job: validate → agent → write (tests/agent_slice/writes.py, where a shipped slice has
store/<name>_writes.py) → follow_commit, so the sync dispatcher applies the outbox rows at once. Idempotent: one run
per note id (the dedupe key), the artifact's id derives from the note, and a second write inserts nothing.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from jobs.resources import LLM
from jobs.runtime.context import JobContext
from jobs.runtime.registry import INTERACTIVE, JobSpec
from jobs.sync import follow_commit


class NoteArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=200)
    note_id: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1, max_length=4000)


def dead_key(note_id: str) -> str:
    return f"test:slice_note:{note_id}:dead"


async def title_note(ctx: JobContext, args: NoteArgs) -> dict[str, Any]:
    """The agent is imported here, as every job does, so listing jobs never loads the LLM client. (It borrows the
    ingestion model setting; a shipped agent adds its own in settings.py.)"""
    from tests.agent_slice.agent import NoteAgent
    from tests.agent_slice.writes import write_note

    ctx.bind(user_id=args.user_id)
    llm = await ctx.resource(LLM)
    result = await NoteAgent(llm, model=ctx.settings.ingestion_model).run(args.user_id, args.text, job_id=ctx.job_id)
    written = await write_note(ctx.pool, args.user_id, args.note_id, result.note)
    if written:
        await follow_commit(ctx)  # the graph and vector stores catch up with the artifact now, not at the next sweep
    return {"note_id": args.note_id, "title": result.note.title, "written": written, "llm_calls": result.usage.calls}


async def mark_dead(ctx: JobContext, args: NoteArgs, reason: str) -> None:
    """What a dead run means for its note: marked with the reason (the runtime calls this once, on every path that
    makes a run dead; a record that never ran is not a run). A shipped slice would mark its entity's row."""
    await ctx.redis.set(dead_key(args.note_id), reason)


SLICE_NOTE = JobSpec(
    name="test.slice-note",
    args_model=NoteArgs,
    handler=title_note,
    queue=INTERACTIVE,
    timeout_s=30,
    max_tries=2,
    backoff_s=0.05,
    dedupe_key="slice-note:{note_id}",
    cron=None,
    on_dead=mark_dead,
    resources=(LLM,),
    description="Test-only: title a note with NoteAgent (tests/agent_slice), the throwaway agent slice.",
)
