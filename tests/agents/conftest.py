"""Fixtures for the agent tests: a scripted OpenAI-compatible server per test and a fast-failing LLM client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from agents.llm import InMemoryCallLog, LLMClient, ResponseFormatSupport
from agents.scripted_llm import ScriptedLLMServer

FAST: dict[str, Any] = {
    "timeout_s": 5.0,
    "max_retries": 2,
    "backoff_initial_s": 0.01,
    "backoff_max_s": 2.0,
}
"""Short backoffs so retry tests take milliseconds, not the production seconds. The timeout is long enough that a
loaded machine never turns an answered call into a timeout and a retry (a test of timeouts asks for a short one,
SHORT_TIMEOUT_S, with a reply slower than it)."""
SHORT_TIMEOUT_S = 0.3

ClientFactory = Callable[..., LLMClient]


@pytest.fixture
def server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as scripted:
        yield scripted


@pytest.fixture
def call_log() -> InMemoryCallLog:
    return InMemoryCallLog()


@pytest.fixture
async def make_client(server: ScriptedLLMServer, call_log: InMemoryCallLog) -> AsyncIterator[ClientFactory]:
    """Build clients against the test's server (real openai client, real HTTP); all are closed afterwards."""
    clients: list[LLMClient] = []
    formats = ResponseFormatSupport()  # per test: what one test learns about a server must not leak into another

    def build(**overrides: Any) -> LLMClient:
        options: dict[str, Any] = {
            "base_url": server.base_url,
            "api_key": "test-key",
            "call_log": call_log,
            "format_support": formats,
            **FAST,
            **overrides,
        }
        client = LLMClient(**options)
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.aclose()


@pytest.fixture
async def client(make_client: ClientFactory) -> LLMClient:
    return make_client()
