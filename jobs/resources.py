"""The resources jobs declare (JobSpec.resources): each opened once per worker process, on first use.

A new store or model client is one more `Resource` here; the worker opens and closes it without knowing what it is.
The agents and stores behind them are imported inside the openers, so listing the jobs (`run.py jobs list`) or a
liveness probe (`run.py health`) never loads an LLM or model client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from jobs.runtime.resources import Resource, WorkerResources

if TYPE_CHECKING:
    from agents.llm import LLMClient


@asynccontextmanager
async def _open_llm(resources: WorkerResources) -> AsyncIterator[LLMClient]:
    from agents.llm import open_llm_client
    from store.llm_calls import PostgresCallLog

    async with open_llm_client(resources.settings, PostgresCallLog(resources.ledger_pool)) as client:
        yield client


LLM: Resource[LLMClient] = Resource(
    "llm", _open_llm, "The OpenAI-compatible chat client; every call recorded in runtime.llm_calls."
)
