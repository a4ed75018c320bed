"""A local OpenAI-compatible /v1/embeddings server over real HTTP: deterministic vectors, reported usage, scripted
failures, and an outage mode (every request answered 503, or held until released) for the embedder's and the
dispatcher's tests."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def fake_vector(text: str, dimension: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [(digest[i % 32] - 128) / 128 for i in range(dimension)]


@dataclass
class EmbeddingsServer:
    """/v1/embeddings on 127.0.0.1: deterministic vectors, reported usage, and a queue of scripted failures."""

    dimension: int = 16
    shuffle: bool = False
    failures: deque[tuple[int, dict[str, str]]] = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)
    down: bool = False
    """While set, every request is answered 503 (an outage of the endpoint)."""
    hold_after: int | None = None
    """When set, requests after this many wait until `released` is set (an endpoint that stops answering)."""
    released: threading.Event = field(default_factory=threading.Event)
    _httpd: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> EmbeddingsServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the tests read `requests`."""

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, **body})
                if server.hold_after is not None and len(server.requests) > server.hold_after:
                    server.released.wait(timeout=120)
                if server.down:
                    self.reply(503, {"error": {"message": "scripted outage", "type": "x", "code": None}}, {})
                    return
                if server.failures:
                    status, headers = server.failures.popleft()
                    self.reply(status, {"error": {"message": f"scripted {status}", "type": "x", "code": None}}, headers)
                    return
                data = [
                    {"object": "embedding", "index": i, "embedding": fake_vector(text, server.dimension)}
                    for i, text in enumerate(body["input"])
                ]
                if server.shuffle:
                    data.reverse()
                tokens = sum(len(text.split()) for text in body["input"])
                usage = {"prompt_tokens": tokens, "total_tokens": tokens}
                self.reply(200, {"object": "list", "data": data, "model": body["model"], "usage": usage}, {})

            def reply(self, status: int, payload: Any, headers: dict[str, str]) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        assert self._httpd is not None
        self.released.set()
        self._httpd.shutdown()
        self._httpd.server_close()
