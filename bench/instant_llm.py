"""A zero-latency, near-zero-CPU OpenAI-compatible endpoint for throughput benchmarks.

Why not agents.scripted_llm.ScriptedLLMServer: that server parses and records every request (http.server, one thread
per connection), which costs about 8 ms of CPU per call. A real LLM runs elsewhere and costs this machine nothing, so
on a 2-core box the scripted server's CPU would be taken from the worker and Postgres being measured. This one answers
every POST with the same pre-encoded chat completion, reading just enough of the request to keep HTTP/1.1 keep-alive
working.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from multiprocessing import get_context
from multiprocessing.connection import Connection
from typing import Any


def completion_bytes(answer: Any, prompt_tokens: int) -> bytes:
    """The whole HTTP response: a chat.completion whose content is `answer` as JSON."""
    content = json.dumps(answer)
    completion_tokens = len(content) // 4
    body = json.dumps(
        {
            "id": "chatcmpl-instant",
            "object": "chat.completion",
            "created": 0,
            "model": "instant",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    ).encode()
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    return head + body


def _forms(match: str) -> tuple[bytes, ...]:
    """How `match` can appear in a request body: as UTF-8, or JSON-escaped (non-ASCII as \\uXXXX, quotes)."""
    return tuple({match.encode(), json.dumps(match)[1:-1].encode()})


def distinct_answer(answer: dict[str, Any], serial: int) -> dict[str, Any]:
    """`answer` with its memory units' titles and contents and its concepts' descriptions made its own (" #serial"),
    so no two conversations embed the same texts; concept names stay, as common names recur across users."""
    units = [
        {**u, "title": f"{u['title']} #{serial}", "content": f"{u['content']} #{serial}"}
        for u in answer["memory_units"]
    ]
    concepts = [{**c, "description": f"{c.get('description') or ''} #{serial}".strip()} for c in answer["concepts"]]
    return {**answer, "memory_units": units, "concepts": concepts}


async def _serve(
    response: bytes,
    keyed: list[tuple[tuple[bytes, ...], bytes]],
    ready: Connection,
    distinct: tuple[dict[str, Any], int] | None = None,
) -> None:
    served = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length) if length else b""
                chosen = next((r for forms, r in keyed if any(form in body for form in forms)), response)
                if distinct is not None and chosen is response:
                    served += 1
                    chosen = completion_bytes(distinct_answer(distinct[0], served), distinct[1])
                writer.write(chosen)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ready.send(f"http://127.0.0.1:{port}/v1")
    await server.serve_forever()


def _child(
    response: bytes,
    keyed: list[tuple[tuple[bytes, ...], bytes]],
    ready: Connection,
    distinct: tuple[dict[str, Any], int] | None = None,
) -> None:
    asyncio.run(_serve(response, keyed, ready, distinct))


@contextmanager
def instant_llm(
    answer: Any, prompt_tokens: int = 1500, *, keyed: Sequence[tuple[str, Any]] = (), distinct: bool = False
) -> Iterator[str]:
    """Serve `answer` to every chat completion from a child process; yields the base URL (ending in /v1). `keyed`
    (text, answer) pairs answer a request whose body contains the text with that answer instead (the sample
    conversations' own answers, say), the first that matches. `distinct`: every answer's texts are its own
    (distinct_answer), built per request."""
    receiver, sender = get_context("spawn").Pipe(duplex=False)
    responses = [(_forms(text), completion_bytes(value, prompt_tokens)) for text, value in keyed]
    varied = (answer, prompt_tokens) if distinct else None
    process = get_context("spawn").Process(
        target=_child, args=(completion_bytes(answer, prompt_tokens), responses, sender, varied), daemon=True
    )
    process.start()
    try:
        if not receiver.poll(30):
            raise RuntimeError("the instant LLM server did not start within 30 s")
        yield receiver.recv()
    finally:
        process.kill()
        process.join()
