"""Embeddings: the local model (real weights from the installed package, no network) and the OpenAI-compatible
client against a local embeddings server over real HTTP, with every attempt in the call ledger."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from agents.embeddings import (
    LOCAL_DIMENSION,
    LOCAL_MODEL,
    CachedEmbedder,
    LocalEmbedder,
    OpenAIEmbedder,
    local_precision,
    open_embedder,
)
from agents.llm import CallContext, InMemoryCallLog
from core.errors import PermanentError, TransientError
from core.llm_records import CallOutcome, CallPurpose, ResponseFormatMode
from settings import SettingsError, load_settings
from store.llm_calls import PostgresCallLog, list_llm_calls
from tests.embeddings_server import EmbeddingsServer, fake_vector

CONTEXT = CallContext(user_id="u-1", agent="recall", job_id="job-1")


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


# --- the local model -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def local() -> LocalEmbedder:
    return await LocalEmbedder.load()


async def test_local_vectors_are_unit_length_and_deterministic(local: LocalEmbedder) -> None:
    first = await local.embed(["My sister Emma opened a bakery.", "Quarterly taxes"], context=CONTEXT)
    again = await local.embed(["Quarterly taxes"], context=CONTEXT)
    assert (local.model_version, local.dimension) == (LOCAL_MODEL, LOCAL_DIMENSION) == ("all-MiniLM-L6-v2", 384)
    assert [len(v) for v in first] == [384, 384]
    assert all(abs(cosine(v, v) - 1) < 1e-5 for v in first)
    assert cosine(first[1], again[0]) > 0.9999  # alone or in a batch, the same text embeds the same


async def test_local_model_puts_paraphrases_together(local: LocalEmbedder) -> None:
    texts = ["my sister Emma", "Emma, my younger sister", "the quarterly tax return", "I went jogging by the river"]
    sister, paraphrase, taxes, run = await local.embed(texts, context=CONTEXT)
    assert cosine(sister, paraphrase) > 0.7
    assert cosine(sister, paraphrase) > cosine(sister, taxes) + 0.4
    assert cosine(sister, paraphrase) > cosine(sister, run) + 0.4
    assert await local.embed([], context=CONTEXT) == []


async def test_a_small_call_waits_for_one_pass_of_a_large_one_not_all_of_it(local: LocalEmbedder) -> None:
    """The dispatcher's large calls and ingestion's small ones share the model pass by pass (FIFO), in input order
    whatever the length order the passes took."""
    chunked = LocalEmbedder(local._model, batch_size=4)
    large = [f"memory number {n}: " + "a long day of running " * (n % 5) for n in range(40)]
    done: list[str] = []

    async def call(name: str, texts: list[str]) -> list[list[float]]:
        vectors = await chunked.embed(texts, context=CONTEXT)
        done.append(name)
        return vectors

    first = asyncio.create_task(call("large", large))
    await asyncio.sleep(0)  # the large call takes the model for its first pass
    small = await call("small", ["Emma (person)"])
    many = await first
    assert done == ["small", "large"]
    alone = await local.embed([large[7], large[31], "Emma (person)"], context=CONTEXT)
    assert cosine(many[7], alone[0]) > 0.9999 and cosine(many[31], alone[1]) > 0.9999
    assert cosine(small[0], alone[2]) > 0.9999


async def test_bfloat16_and_float32_write_one_vector_space(local: LocalEmbedder) -> None:
    """Workers of either precision share a store under one model_version: each text's two vectors are the same
    direction, and any two texts are as similar in one precision as in the other (the similarity rule's 0.80 and
    recall's ranking read the same)."""
    texts = [
        "Running (activity)",
        "half-marathon training (goal)",
        "My sister Emma opened a bakery in Lisbon and I helped her on the first morning.",
        "Eu corri a minha primeira meia maratona e doeram-me as canelas.",
        "Quarterly taxes",
    ]
    narrow = await (await LocalEmbedder.load(precision="bfloat16")).embed(texts, context=CONTEXT)
    wide = await (await LocalEmbedder.load(precision="float32")).embed(texts, context=CONTEXT)
    assert all(abs(cosine(v, v) - 1) < 1e-5 for v in narrow)  # normalized in float32 after the pass
    assert min(cosine(a, b) for a, b in zip(narrow, wide, strict=True)) > 0.999
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            assert abs(cosine(narrow[i], narrow[j]) - cosine(wide[i], wide[j])) < 0.01


def test_auto_precision_is_one_of_the_two_and_an_explicit_one_is_kept() -> None:
    assert local_precision("auto") in ("bfloat16", "float32")
    assert (local_precision("float32"), local_precision("bfloat16")) == ("float32", "bfloat16")
    with pytest.raises(SettingsError, match="ORRERY_LOCAL_EMBEDDINGS_PRECISION"):
        load_settings(local_embeddings_precision="half")


async def test_blank_texts_are_refused_before_any_work(local: LocalEmbedder) -> None:
    with pytest.raises(ValueError, match="text 1 to embed is blank"):
        await local.embed(["fine", "  "], context=CONTEXT)


async def test_settings_without_an_endpoint_open_the_local_model() -> None:
    async with open_embedder(load_settings(embeddings_base_url=None), InMemoryCallLog()) as embedder:
        assert isinstance(embedder, CachedEmbedder) and embedder.model_version == LOCAL_MODEL
        assert not embedder.records_calls  # the local model costs no call: the dispatcher may batch users together


# --- an OpenAI-compatible endpoint ---------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[EmbeddingsServer]:
    with EmbeddingsServer() as running:
        yield running


@pytest.fixture
async def client(server: EmbeddingsServer) -> AsyncIterator[tuple[OpenAIEmbedder, InMemoryCallLog]]:
    calls = InMemoryCallLog()
    embedder = OpenAIEmbedder(
        base_url=server.base_url,
        api_key="k",
        model="embed-small",
        dimension=16,
        call_log=calls,
        timeout_s=2,
        max_retries=2,
        batch_size=4,
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
    )
    yield embedder, calls
    await embedder.aclose()


async def test_batches_keep_the_input_order_and_each_request_is_recorded(
    server: EmbeddingsServer, client: tuple[OpenAIEmbedder, InMemoryCallLog]
) -> None:
    embedder, calls = client
    server.shuffle = True  # the server lists vectors out of order; `index` says where each belongs
    texts = [f"text number {n}" for n in range(10)]
    vectors = await embedder.embed(texts, context=CONTEXT)
    assert [len(r["input"]) for r in server.requests] == [4, 4, 2]
    assert {r["model"] for r in server.requests} == {"embed-small"}
    assert {r["encoding_format"] for r in server.requests} == {"float"}
    for text, vector in zip(texts, vectors, strict=True):
        raw = fake_vector(text, 16)
        norm = cosine(raw, raw) ** 0.5
        assert vector == pytest.approx([x / norm for x in raw])
    records = [r for _, r in calls.records]
    assert [(r.outcome, r.prompt_tokens, r.completion_tokens) for r in records] == [
        (CallOutcome.OK, 12, 0),
        (CallOutcome.OK, 12, 0),
        (CallOutcome.OK, 6, 0),
    ]
    first = records[0]
    assert (first.user_id, first.agent, first.job_id, first.model) == ("u-1", "recall", "job-1", "embed-small")
    assert (first.prompt_name, first.purpose, first.response_format) == (
        "embeddings",
        CallPurpose.ANSWER,
        ResponseFormatMode.PROMPT_ONLY,
    )
    assert first.endpoint == server.base_url
    assert (embedder.model_version, embedder.dimension) == ("embed-small", 16)


async def test_rate_limits_are_retried_and_every_attempt_recorded(
    server: EmbeddingsServer, client: tuple[OpenAIEmbedder, InMemoryCallLog]
) -> None:
    embedder, calls = client
    server.failures.extend([(429, {"Retry-After": "0"}), (503, {})])
    vectors = await embedder.embed(["hello"], context=CONTEXT)
    assert len(vectors) == 1 and len(server.requests) == 3
    assert [(r.attempt, r.outcome) for _, r in calls.records] == [
        (1, CallOutcome.RATE_LIMITED),
        (2, CallOutcome.SERVER_ERROR),
        (3, CallOutcome.OK),
    ]


async def test_a_server_that_keeps_failing_is_a_transient_error(
    server: EmbeddingsServer, client: tuple[OpenAIEmbedder, InMemoryCallLog]
) -> None:
    embedder, calls = client
    server.failures.extend([(500, {})] * 3)
    with pytest.raises(TransientError, match=r"recall: embeddings call to .* still failing after 3 attempts"):
        await embedder.embed(["hello"], context=CONTEXT)
    assert len(calls.records) == 3


async def test_a_bad_key_is_permanent_and_names_the_setting(
    server: EmbeddingsServer, client: tuple[OpenAIEmbedder, InMemoryCallLog]
) -> None:
    embedder, calls = client
    server.failures.append((401, {}))
    with pytest.raises(PermanentError, match=r"auth_error.*check ORRERY_EMBEDDINGS_API_KEY"):
        await embedder.embed(["hello"], context=CONTEXT)
    assert len(server.requests) == 1 and calls.records[0][1].outcome is CallOutcome.AUTH_ERROR


async def test_vectors_of_another_size_name_the_dimension_setting(
    server: EmbeddingsServer, client: tuple[OpenAIEmbedder, InMemoryCallLog]
) -> None:
    embedder, calls = client
    server.dimension = 24
    with pytest.raises(PermanentError, match="24-dimensional vectors but ORRERY_EMBEDDINGS_DIMENSION is 16; set it"):
        await embedder.embed(["hello"], context=CONTEXT)
    # the call was paid for all the same: recorded, with the tokens the server reported
    assert [(r.outcome, r.prompt_tokens) for _, r in calls.records] == [(CallOutcome.SERVER_ERROR, 1)]


async def test_a_cancelled_embeddings_call_is_recorded(
    server: EmbeddingsServer, client: tuple[OpenAIEmbedder, InMemoryCallLog]
) -> None:
    embedder, calls = client
    server.hold_after = 0  # every request waits until the server is released
    task = asyncio.create_task(embedder.embed(["hello there"], context=CONTEXT))
    while True:  # until the server has the request: progress, not a wall clock
        if server.requests:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    ((_, record),) = calls.records
    assert record.outcome is CallOutcome.CANCELLED and record.prompt_tokens > 0


async def test_the_ledgers_checks_accept_embedding_calls(server: EmbeddingsServer, pool: asyncpg.Pool) -> None:
    """The rows go to runtime.llm_calls as they are, through the settings-built client."""
    settings = load_settings(
        embeddings_base_url=server.base_url, embeddings_model="embed-small", embeddings_dimension=16
    )
    async with open_embedder(settings, PostgresCallLog(pool)) as embedder:
        assert isinstance(embedder, CachedEmbedder) and embedder.records_calls
        await embedder.embed(["one", "two words"], context=CONTEXT)
    stored = await list_llm_calls(pool, "u-1")
    assert [(s.call.prompt_name, s.call.prompt_tokens, s.call.outcome) for s in stored] == [
        ("embeddings", 3, CallOutcome.OK)
    ]


async def test_the_cache_embeds_each_text_once_and_forgets_the_least_recently_used(
    server: EmbeddingsServer, client: tuple[OpenAIEmbedder, InMemoryCallLog]
) -> None:
    inner, calls = client
    cached = CachedEmbedder(inner, capacity=3)
    first = await cached.embed(["a", "b", "a"], context=CONTEXT)  # a repeat within one call is embedded once
    assert [r["input"] for r in server.requests] == [["a", "b"]]
    assert first[0] == first[2] and first[0] == pytest.approx(fake_unit("a"), abs=1e-6)
    server.requests.clear()

    assert await cached.embed(["b", "c"], context=CONTEXT) == [first[1], pytest.approx(fake_unit("c"), abs=1e-6)]
    assert [r["input"] for r in server.requests] == [["c"]]  # b came from the cache
    await cached.embed(["d"], context=CONTEXT)  # a, used least recently, makes room
    await cached.embed(["a", "b"], context=CONTEXT)
    assert [r["input"] for r in server.requests] == [["c"], ["d"], ["a"]]
    assert (cached.hits, cached.misses) == (3, 5)
    assert sum(r.outcome is CallOutcome.OK for _, r in calls.records) == 4  # one per call with a miss; hits cost none


def fake_unit(text: str) -> list[float]:
    raw = fake_vector(text, 16)
    norm = cosine(raw, raw) ** 0.5
    return [x / norm for x in raw]
