"""A scripted OpenAI-compatible HTTP server on 127.0.0.1, for tests and for the demo without an API key.

Why a real server instead of a mock: the LLM layer's behaviour at the wire (status codes, Retry-After, timeouts,
response_format negotiation, usage accounting) is exactly what can break, so tests drive the real `openai` client
over real HTTP and assert on the requests this server recorded.

Its usage counts the prompt as OpenAI does, the structured-output schema included, and reports the cached part of
it the way OpenAI's automatic prompt caching would (agents/scripted_prompt_cache.py says what is imitated and what
is assumed).

Two ways to script it:
- a queue of `ScriptedReply` (tests): JSON content, raw text, an HTTP error with an optional Retry-After, a body
  that breaks off, or a delay before replying to provoke a client timeout. Each request takes the next reply.
- keyed answers (demo): `KeyedAnswer(match, answer, prompt)`; when the queue is empty, the first answer for the
  request's prompt whose `match` occurs in the request's message texts is returned.

Two routes: chat completions (text, or text and image parts for a vision request: the text parts are matched) and
`/audio/transcriptions` (multipart, as the openai client's audio API sends it: matched on its `prompt` field and the
audio's filename; the answer is `{"text": "..."}`).
A request with neither gets a 400 that says so, which the client reports as a permanent error.

Sample answers are per prompt: `agents/samples/<prompt_name>.json` answers the requests rendered from
prompts/<prompt_name>.j2, which the client names in the X-Orrery-Prompt header (prompts.PROMPT_HEADER). So a new agent
adds its samples file and the demo answers it with no code change; a test's own agent adds its directory for a while
(`extra_sample_dir`). A samples file is `{"about": "...", "answers": [{"match": "text", "answer": {...}}, ...]}`; an
answer without `match` answers every request of its prompt. An answer may cite items by name (`"@c:Running"`), which
becomes the handle the request listed for them, or `"@shown:TEXT"`, the handle of any listed line holding TEXT
(agents/scripted_handles.py).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from agents.scripted_handles import resolve_references, resolve_shown
from agents.scripted_prompt_cache import PromptCache, count_tokens, message_content_text, prompt_text
from prompts import PROMPT_HEADER

_extra_sample_dirs: list[Path] = []
TRANSCRIPTIONS = "/audio/transcriptions"
IMAGE_TOKENS = 85
"""What the server bills an image part (OpenAI's price of a low-detail image)."""


@dataclass(frozen=True)
class ScriptedReply:
    """One scripted response. Build with the class methods; `delay_s` is waited before anything is sent."""

    status: int = 200
    content: str | None = None
    error_message: str | None = None
    error_type: str = "server_error"
    error_code: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    finish_reason: str = "stop"
    raw_body: str | None = None  # sent as the whole response body instead of a chat completion
    cut_at: int | None = None  # send only this many bytes of the body, then close the connection

    @classmethod
    def json(cls, value: Any, *, delay_s: float = 0.0) -> ScriptedReply:
        return cls(content=json.dumps(value), delay_s=delay_s)

    @classmethod
    def text(cls, content: str, *, finish_reason: str = "stop", delay_s: float = 0.0) -> ScriptedReply:
        return cls(content=content, finish_reason=finish_reason, delay_s=delay_s)

    @classmethod
    def error(
        cls,
        status: int,
        message: str,
        *,
        retry_after: str | None = None,
        error_type: str | None = None,
        code: str | None = None,
    ) -> ScriptedReply:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        kind = error_type or ("invalid_request_error" if status < 500 else "server_error")
        return cls(status=status, error_message=message, error_type=kind, error_code=code, headers=headers)

    @classmethod
    def garbled(cls, body: str) -> ScriptedReply:
        """A 200 whose body is not a chat completion (a broken proxy or server)."""
        return cls(raw_body=body)

    @classmethod
    def cut(cls, value: Any, *, at: int = 20) -> ScriptedReply:
        """A 200 announcing the whole completion of `value` but breaking off after `at` bytes of it (a dropped
        connection, a proxy's timeout)."""
        return cls(content=json.dumps(value), cut_at=at)

    @classmethod
    def slow(cls, delay_s: float, then: ScriptedReply | None = None) -> ScriptedReply:
        """Wait `delay_s`, then send `then` (an empty JSON object by default) — if the client is still there."""
        return dataclasses.replace(then or cls.json({}), delay_s=delay_s)


@dataclass(frozen=True)
class KeyedAnswer:
    """Answer `answer` (as JSON) to a request of prompt `prompt` whose message texts contain `match`.

    `prompt` None answers whatever prompt a request names; a request that names none may take any answer."""

    match: str
    answer: Any
    prompt: str | None = None
    delay_s: float = 0.0
    """Waited before answering (a model that thinks, so a fault test's kills land mid-call)."""

    def answers(self, prompt: str | None, text: str) -> bool:
        return (self.prompt is None or prompt is None or self.prompt == prompt) and self.match in text


@dataclass(frozen=True)
class RecordedRequest:
    """A request as the server received it."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: Any
    received_at: float  # time.monotonic()

    @property
    def messages(self) -> list[dict[str, Any]]:
        if isinstance(self.body, dict) and isinstance(self.body.get("messages"), list):
            return list(self.body["messages"])
        return []

    @property
    def response_format(self) -> dict[str, Any] | None:
        value = self.body.get("response_format") if isinstance(self.body, dict) else None
        return value if isinstance(value, dict) else None

    @property
    def prompt_name(self) -> str | None:
        """The prompt the client says it rendered this request from (the PROMPT_HEADER header), if any."""
        return self.headers.get(PROMPT_HEADER.lower())

    def message_text(self, role: str | None = None) -> str:
        """All message texts (of one role, if given), joined by blank lines; of a message in parts, its text parts
        (an image part's base64 is not text)."""
        return "\n\n".join(
            message_content_text(m.get("content")) for m in self.messages if role is None or m.get("role") == role
        )

    @property
    def images(self) -> list[str]:
        """The image URLs of the request's messages (data: URLs), in order."""
        return [
            str(part.get("image_url", {}).get("url"))
            for m in self.messages
            if isinstance(m.get("content"), list)
            for part in m["content"]
            if isinstance(part, dict) and part.get("type") == "image_url"
        ]

    @property
    def form(self) -> dict[str, Any]:
        """The fields of a multipart request (a transcription): text fields as text, a file as its filename,
        content_type and size."""
        return self.body if isinstance(self.body, dict) and self.path.endswith(TRANSCRIPTIONS) else {}


class ScriptedLLMServer:
    """The server; use as a context manager (or start()/stop()). `base_url` ends in /v1, like OpenAI's."""

    def __init__(
        self,
        replies: Iterable[ScriptedReply] = (),
        *,
        keyed_answers: Sequence[KeyedAnswer] = (),
        supports_json_schema: bool = True,
        model_name: str = "scripted",
        prompt_cache: PromptCache | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self.prompt_cache = prompt_cache or PromptCache()
        self._queue: deque[ScriptedReply] = deque(replies)
        self._keyed = list(keyed_answers)
        self._requests: list[RecordedRequest] = []
        self.supports_json_schema = supports_json_schema
        self.model_name = model_name
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._completions = 0

    # --- scripting ---------------------------------------------------------------------------------------------
    def enqueue(self, *replies: ScriptedReply) -> None:
        with self._lock:
            self._queue.extend(replies)

    @property
    def pending_replies(self) -> int:
        with self._lock:
            return len(self._queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in order (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    @property
    def transcription_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith(TRANSCRIPTIONS)]

    # --- lifecycle ---------------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the scripted LLM server is not running; use it as a context manager")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def start(self) -> ScriptedLLMServer:
        handler = type("Handler", (_Handler,), {"scripted": self})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False  # a handler still sleeping out a delay must not hold up stop()
        self._httpd = httpd
        self._stopping.clear()
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="scripted-llm", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> ScriptedLLMServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # --- request handling (called from handler threads) ----------------------------------------------------------
    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _next_reply(self, request: RecordedRequest) -> ScriptedReply:
        format_type = (request.response_format or {}).get("type")
        if format_type == "json_schema" and not self.supports_json_schema:
            # What vLLM/llama.cpp-style servers without schema support answer; not taken from the queue.
            return ScriptedReply.error(400, "response_format type 'json_schema' is not supported by this server")
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        text, prompt = request.message_text(), request.prompt_name
        if request.form:  # a transcription: matched on its guiding prompt and the audio's filename
            text = f"{request.form.get('prompt', '')}\n{request.form.get('file', {}).get('filename', '')}"
        for keyed in self._keyed:
            if keyed.answers(prompt, text):
                return ScriptedReply.json(
                    resolve_references(resolve_shown(keyed.answer, text), text), delay_s=keyed.delay_s
                )
        if prompt is None:
            return ScriptedReply.error(400, "scripted LLM server: no reply scripted for this request")
        return ScriptedReply.error(
            400, f"scripted LLM server: no sample answer for prompt {prompt!r} matches; add one to {prompt}.json"
        )

    def _completion_body(self, request: RecordedRequest, reply: ScriptedReply) -> dict[str, Any]:
        with self._lock:
            self._completions += 1
            number = self._completions
        content = reply.content or ""
        prompt = prompt_text(request.body)
        prompt_tokens = count_tokens(prompt) + IMAGE_TOKENS * len(request.images)
        completion_tokens = count_tokens(content)
        model = request.body.get("model") if isinstance(request.body, dict) else None
        cached_tokens = self.prompt_cache.cached_tokens(str(model or self.model_name), prompt)
        return {
            "id": f"chatcmpl-scripted-{number}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model or self.model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": cached_tokens, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
            },
        }

    def _transcription_body(self, request: RecordedRequest, reply: ScriptedReply) -> dict[str, Any]:
        """A transcription's JSON: the reply's `text` (a keyed answer is {"text": "..."}), with token usage
        (the guiding prompt's tokens and one per KB of audio in, the transcript's tokens out)."""
        try:
            answer = json.loads(reply.content or "{}")
        except json.JSONDecodeError:
            answer = {"text": reply.content}
        text = str(answer.get("text", "")) if isinstance(answer, dict) else ""
        audio = request.form.get("file", {}).get("size", 0)
        input_tokens = count_tokens(str(request.form.get("prompt", ""))) + audio // 1024
        usage = {"input_tokens": input_tokens, "output_tokens": count_tokens(text)}
        return {"text": text, "usage": {"type": "tokens", **usage, "total_tokens": sum(usage.values())}}

    def _models_body(self) -> dict[str, Any]:
        model = {"id": self.model_name, "object": "model", "created": 0, "owned_by": "orrery-scripted"}
        return {"object": "list", "data": [model]}


class _Handler(BaseHTTPRequestHandler):
    scripted: ScriptedLLMServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr lines; tests assert on `requests` instead."""

    def do_GET(self) -> None:
        self._record(None)
        if self.path.rstrip("/").endswith("/models"):
            self._send_json(200, self.scripted._models_body())
        else:
            self._send_json(404, _error_body(f"no route GET {self.path}", "invalid_request_error", None))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        transcription = self.path.rstrip("/").endswith(TRANSCRIPTIONS)
        try:
            body: Any = _form(self.headers.get("Content-Type", ""), raw) if transcription else None
            body = body if transcription else json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        request = self._record(body)
        if not (transcription or self.path.rstrip("/").endswith("/chat/completions")):
            self._send_json(404, _error_body(f"no route POST {self.path}", "invalid_request_error", None))
            return
        reply = self.scripted._next_reply(request)
        if reply.delay_s and self.scripted._stopping.wait(reply.delay_s):
            return  # server stopping: drop the reply
        if reply.raw_body is not None:
            self._send_bytes(reply.status, reply.raw_body.encode("utf-8"), reply.headers)
        elif reply.status != 200:
            message = reply.error_message or HTTPStatus(reply.status).phrase
            body_out = _error_body(message, reply.error_type, reply.error_code)
            self._send_json(reply.status, body_out, reply.headers)
        else:
            made = self.scripted._transcription_body if transcription else self.scripted._completion_body
            completion = json.dumps(made(request, reply)).encode("utf-8")
            self._send_bytes(200, completion, reply.headers, cut_at=reply.cut_at)

    def _record(self, body: Any) -> RecordedRequest:
        request = RecordedRequest(
            method=self.command,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            received_at=time.monotonic(),
        )
        self.scripted._record(request)
        return request

    def _send_json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(payload).encode("utf-8"), headers)

    def _send_bytes(
        self, status: int, data: bytes, headers: Mapping[str, str] | None = None, *, cut_at: int | None = None
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data if cut_at is None else data[:cut_at])
            if cut_at is not None:
                self.close_connection = True  # the Content-Length promised more: the client reads a broken body
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a provoked timeout); nothing to send it


def _form(content_type: str, raw: bytes) -> dict[str, Any]:
    """A multipart/form-data body's fields (what the openai client sends to /audio/transcriptions)."""
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = str(part.get_param("name", header="content-disposition") or "")
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is None:
            fields[name] = data.decode("utf-8", "replace")
        else:
            fields[name] = {"filename": filename, "content_type": part.get_content_type(), "size": len(data)}
    return fields


def _error_body(message: str, error_type: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


def shipped_samples() -> Traversable:
    """agents/samples/, where every agent's sample answers ship (with the wheel too)."""
    return resources.files("agents").joinpath("samples")


@contextmanager
def extra_sample_dir(directory: Path) -> Iterator[Path]:
    """Serve the samples files in `directory` too while the block runs: a test's own agent keeps them beside it.

    Read when a sample server starts (`sample_answers_server`), e.g. when a worker first opens its LLM resource."""
    if not directory.is_dir():
        raise FileNotFoundError(f"no samples directory {directory}")
    _extra_sample_dirs.append(directory)
    try:
        yield directory
    finally:
        _extra_sample_dirs.remove(directory)


def load_sample_answers(prompt_name: str = "ingestion", *, directory: Traversable | None = None) -> list[KeyedAnswer]:
    """One prompt's sample answers: `<prompt_name>.json` in agents/samples/ or `directory`. Without a name, the
    ingestion agent's (tests and benchmarks take the first as a valid answer)."""
    return _read_samples((directory or shipped_samples()).joinpath(f"{prompt_name}.json"))


def load_all_sample_answers(directories: Sequence[Traversable] = ()) -> list[KeyedAnswer]:
    """Every prompt's sample answers from agents/samples/, the added directories and `directories`."""
    files: dict[str, Traversable] = {}
    for directory in (shipped_samples(), *_extra_sample_dirs, *directories):
        for file in sorted(directory.iterdir(), key=lambda f: f.name):
            if not (file.is_file() and file.name.endswith(".json")):
                continue
            if file.name in files:
                raise ValueError(f"two samples files for prompt {file.name[:-5]!r}: {files[file.name]} and {file}")
            files[file.name] = file
    return [answer for file in files.values() for answer in _read_samples(file)]


def _read_samples(file: Traversable) -> list[KeyedAnswer]:
    """A samples file's answers, each tagged with the prompt the file is named after; a malformed file is one line."""
    prompt = file.name.removesuffix(".json")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no sample answers for prompt {prompt!r}: expected the file {file}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"samples file {file} is not JSON: {exc}") from None
    answers = data.get("answers") if isinstance(data, dict) else None
    if not isinstance(answers, list) or not all(isinstance(a, dict) and "answer" in a for a in answers):
        raise ValueError(f'samples file {file}: expected {{"answers": [{{"match": "...", "answer": {{...}}}}, ...]}}')
    return [KeyedAnswer(match=str(a.get("match", "")), answer=a["answer"], prompt=prompt) for a in answers]


@contextmanager
def sample_answers_server(*directories: Traversable) -> Iterator[ScriptedLLMServer]:
    """The scripted server answering every prompt that has samples (agents/samples/, added directories, and
    `directories`): what the demo talks to when no API key is set."""
    with ScriptedLLMServer(keyed_answers=load_all_sample_answers(directories)) as server:
        yield server
