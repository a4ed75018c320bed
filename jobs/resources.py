"""The resources jobs declare (JobSpec.resources): each opened once per worker process, on first use.

A new store or model client is one more `Resource` here; the worker opens and closes it without knowing what it is.
The agents and stores behind them are imported inside the openers, so listing the jobs (`run.py jobs list`) or a
liveness probe (`run.py health`) never loads an LLM or model client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from jobs.runtime.metrics import ObservedCallLog
from jobs.runtime.resources import Resource, WorkerResources
from settings import Settings

if TYPE_CHECKING:
    from agents.embeddings import Embedder
    from agents.llm import LLMClient
    from settings import Settings
    from store.graph.base import GraphStore
    from store.vector.base import VectorStore


@asynccontextmanager
async def _open_llm(resources: WorkerResources) -> AsyncIterator[LLMClient]:
    from agents.llm import open_llm_client
    from store.llm_calls import PostgresCallLog

    async with open_llm_client(resources.settings, ObservedCallLog(PostgresCallLog(resources.ledger_pool))) as client:
        yield client


def _llm_problem(settings: Settings) -> str | None:
    return settings.llm_problem()


LLM: Resource[LLMClient] = Resource(
    "llm",
    _open_llm,
    "The OpenAI-compatible chat client; every call recorded in runtime.llm_calls, counted and traced.",
    problem=_llm_problem,
)


@asynccontextmanager
async def _open_embedder(resources: WorkerResources) -> AsyncIterator[Embedder]:
    from agents.embeddings import open_embedder
    from store.llm_calls import PostgresCallLog

    async with open_embedder(resources.settings, ObservedCallLog(PostgresCallLog(resources.ledger_pool))) as embedder:
        yield embedder


def _local_model(settings: Settings) -> bool:
    """The local model takes seconds to load: a worker loads it before taking work (an endpoint opens at once)."""
    return settings.embeddings_base_url is None


EMBEDDER: Resource[Embedder] = Resource(
    "embedder",
    _open_embedder,
    "Text embeddings: an OpenAI-compatible endpoint, or the local all-MiniLM-L6-v2 model (loaded at worker start).",
    warm=_local_model,
)


@asynccontextmanager
async def _open_graph(resources: WorkerResources) -> AsyncIterator[GraphStore]:
    from store.graph import open_graph_store

    async with open_graph_store(resources.settings, resources.pool) as graph:
        yield graph


GRAPH: Resource[GraphStore] = Resource("graph", _open_graph, "The graph store: Neo4j, or the graph in Postgres.")


@asynccontextmanager
async def _open_vector(resources: WorkerResources) -> AsyncIterator[VectorStore]:
    from store.vector import open_vector_store

    embedder = await resources.get(EMBEDDER)
    async with open_vector_store(resources.settings, resources.pool, embedder) as vector:
        yield vector


VECTOR: Resource[VectorStore] = Resource(
    "vector", _open_vector, "The vector store in the embedder's space: Weaviate, or pgvector. Needs EMBEDDER."
)
