"""Fetching attachments (store/media_files.py) from files the tests write and a local HTTP server: what is at fault
in the file is one MediaReadError, what may pass a TransientError, and no URL makes a worker read a huge body whole,
wait for ever, or fetch from a place it should not."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from core.errors import TransientError
from core.media import FailureCode, MediaReadError
from store.media_files import FetchLimits, fetch_media
from tests.media.files import tiny_png

PNG = tiny_png()
MAX = 10_000


class _Storage(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sent: dict[str, int]  # bytes written per path, set by the fixture

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/photo.png":
            self._reply(200, PNG, {"Content-Type": "image/png"})
        elif path == "/missing":
            self._reply(404, b"no")
        elif path == "/busy":
            self._reply(503, b"later")
        elif path == "/private":
            self._reply(403, b"expired")
        elif path == "/declared-huge":
            self._reply(200, b"x" * 10, {"Content-Length": str(10**9)}, length=False)
        elif path == "/redirect":
            self._reply(302, b"", {"Location": "/photo.png"})
        elif path == "/redirect-away":
            self._reply(302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"})
        elif path == "/redirect-loop":
            self._reply(302, b"", {"Location": "/redirect-loop"})
        elif path in ("/endless", "/drip"):
            self._stream(path)
        else:
            self._reply(404, b"?")

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None, *, length: bool = True) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the client hung up
            self.wfile.write(body)

    def _stream(self, path: str) -> None:
        """A chunked body without an end: `endless` as fast as it is read, `drip` a byte every 0.2 s."""
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"y" * (4096 if path == "/endless" else 1)
        try:
            while True:
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()
                self.sent[path] = self.sent.get(path, 0) + len(chunk)
                if path == "/drip":
                    time.sleep(0.2)
        except OSError:
            return  # the client hung up: what it should do


@pytest.fixture
def storage() -> Iterator[tuple[str, dict[str, int]]]:
    sent: dict[str, int] = {}
    handler = type("Handler", (_Storage,), {"sent": sent})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", sent
    finally:
        httpd.shutdown()
        httpd.server_close()


def limits(root: Path, *, hosts: tuple[str, ...] = ("127.0.0.1",), timeout_s: float = 5.0) -> FetchLimits:
    return FetchLimits(max_bytes=MAX, timeout_s=timeout_s, file_root=root, allowed_hosts=frozenset(hosts))


async def test_http_fetches_the_file_and_follows_a_redirect(
    storage: tuple[str, dict[str, int]], tmp_path: Path
) -> None:
    base, _ = storage
    fetched = await fetch_media(f"{base}/photo.png?X-Amz-Signature=secret", limits(tmp_path))
    assert fetched.data == PNG and fetched.content_type == "image/png"
    assert (await fetch_media(f"{base}/redirect", limits(tmp_path))).data == PNG


@pytest.mark.parametrize(
    ("path", "code", "message"),
    [
        ("/missing", FailureCode.MISSING, "no file at http://127.0.0.1"),
        ("/private", FailureCode.UNREADABLE, "HTTP 403"),
        ("/declared-huge", FailureCode.TOO_LARGE, "1000000000 bytes, over ORRERY_MEDIA_MAX_BYTES"),
        ("/endless", FailureCode.TOO_LARGE, "over ORRERY_MEDIA_MAX_BYTES"),
        ("/redirect-away", FailureCode.REFUSED_URL, "host 169.254.169.254 is not in ORRERY_MEDIA_ALLOWED_HOSTS"),
        ("/redirect-loop", FailureCode.UNREADABLE, "redirects more than 3 times"),
    ],
)
async def test_what_is_wrong_with_the_file_is_one_failure(
    storage: tuple[str, dict[str, int]], tmp_path: Path, path: str, code: FailureCode, message: str
) -> None:
    """The endless body has no end to read to: only a fetch that counts as it streams and stops at the limit ends
    with TOO_LARGE (reading it whole would run into the deadline instead)."""
    base, _ = storage
    with pytest.raises(MediaReadError, match=message) as caught:
        await fetch_media(f"{base}{path}?signature=secret", limits(tmp_path))
    assert caught.value.code is code
    assert "secret" not in caught.value.reason  # a presigned URL's signature is never stored


async def test_what_may_pass_is_transient(storage: tuple[str, dict[str, int]], tmp_path: Path) -> None:
    base, _ = storage
    with pytest.raises(TransientError, match="HTTP 503"):
        await fetch_media(f"{base}/busy", limits(tmp_path))
    with pytest.raises(TransientError, match="ORRERY_MEDIA_FETCH_TIMEOUT_S"):  # a byte every 0.2 s never ends
        await fetch_media(f"{base}/drip", limits(tmp_path, timeout_s=1.0))
    with pytest.raises(TransientError, match="ConnectError"):  # nobody listens there
        await fetch_media("http://127.0.0.1:9/x.png", limits(tmp_path))


async def test_without_a_host_list_only_public_addresses_are_fetched(
    storage: tuple[str, dict[str, int]], tmp_path: Path
) -> None:
    base, _ = storage
    with pytest.raises(MediaReadError, match=r"resolves to a non-public address \(127.0.0.1\)") as caught:
        await fetch_media(f"{base}/photo.png", limits(tmp_path, hosts=()))
    assert caught.value.code is FailureCode.REFUSED_URL
    with pytest.raises(MediaReadError, match="non-public address"):
        await fetch_media("http://localhost:9/x", limits(tmp_path, hosts=()))


@pytest.mark.parametrize(
    "url", ["s3://bucket/key.png", "data:image/png;base64,AAAA", "ftp://example.org/x.png", "photo.png"]
)
async def test_other_schemes_are_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(MediaReadError, match="is not fetched: Orrery reads file://") as caught:
        await fetch_media(url, limits(tmp_path))
    assert caught.value.code is FailureCode.REFUSED_URL


async def test_file_urls_are_read_under_the_root_only(tmp_path: Path) -> None:
    root, outside = tmp_path / "media", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    (root / "photo one.png").write_bytes(PNG)
    (outside / "secret.txt").write_text("OPENAI_API_KEY=sk-...")
    (root / "link.txt").symlink_to(outside / "secret.txt")
    (root / "huge.bin").write_bytes(b"z" * (MAX + 1))
    (root / "folder").mkdir()
    os.mkfifo(root / "pipe")

    assert (await fetch_media((root / "photo one.png").as_uri(), limits(root))).data == PNG
    cases = {
        (outside / "secret.txt").as_uri(): (FailureCode.REFUSED_URL, "outside ORRERY_MEDIA_FILE_ROOT"),
        (root / "link.txt").as_uri(): (FailureCode.REFUSED_URL, "outside ORRERY_MEDIA_FILE_ROOT"),
        f"{root.as_uri()}/../elsewhere/secret.txt": (FailureCode.REFUSED_URL, "outside"),
        (root / "absent.png").as_uri(): (FailureCode.MISSING, "no file at"),
        (root / "huge.bin").as_uri(): (FailureCode.TOO_LARGE, f"{MAX + 1} bytes"),
        (root / "folder").as_uri(): (FailureCode.MISSING, "not a regular file"),
        (root / "pipe").as_uri(): (FailureCode.MISSING, "not a regular file"),  # a FIFO would block the read
        f"file://other-host{root}/photo%20one.png": (FailureCode.REFUSED_URL, "names a host"),
    }
    for url, (code, message) in cases.items():
        with pytest.raises(MediaReadError, match=message) as caught:
            await fetch_media(url, limits(root))
        assert caught.value.code is code, url
