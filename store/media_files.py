"""Fetching an attachment's bytes from the storage URL the web app wrote: `file://` under one directory and
`http(s)://`, with a size limit, an overall deadline and no surprise destinations.

Why only these two: `file://` is the web app's uploads on a volume both share, `https://` its object store or CDN (a
presigned URL of S3, GCS or Azure works as is). `s3://`, `gs://` and the like would need a cloud client and
credentials in every worker, for what a presigned URL already gives; `data:` URLs would put the file in the row.

The limits hold against a hostile or broken URL: a file is read, or a body streamed, only up to
ORRERY_MEDIA_MAX_BYTES (one byte more tells it is over; a declared size over it is refused before reading), the
whole fetch has one deadline (a server dripping a byte a second does not hold a worker), and redirects are followed
by hand, a few hops at most, each checked again. `file://` paths must resolve (symlinks followed) inside
ORRERY_MEDIA_FILE_ROOT, so a row cannot make Orrery read its own configuration or `/proc`; an `http(s)` host must be
in ORRERY_MEDIA_ALLOWED_HOSTS when that is set, and otherwise resolve to public addresses only, so a row cannot
make a worker read the cloud's metadata service or a database's admin port and store the answer as memory.

What is wrong with the file (missing, too large, refused) raises MediaReadError: one failure on that item. What may
pass (a refused connection, a 5xx, a timeout) raises TransientError: the job is retried, and its dead hook marks the
item failed when the tries are spent.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import httpx

from core.errors import TransientError
from core.media import FailureCode, MediaReadError

CHUNK_BYTES = 64 * 1024
MAX_REDIRECTS = 3
SCHEMES = ("file", "http", "https")


@dataclass(frozen=True)
class FetchLimits:
    """What a fetch may do (from ORRERY_MEDIA_* settings)."""

    max_bytes: int
    timeout_s: float
    file_root: Path
    allowed_hosts: frozenset[str] = frozenset()
    """Hosts (lowercase names or addresses) http(s) URLs may name; empty: any host whose addresses are all public."""


@dataclass(frozen=True)
class FetchedFile:
    data: bytes
    content_type: str | None
    """What the server said it sends (http), or None (file); the type that counts is read from the bytes."""


async def fetch_media(url: str, limits: FetchLimits) -> FetchedFile:
    """The bytes at `url`, within `limits`; raises MediaReadError or TransientError (module docstring)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        raise MediaReadError(
            FailureCode.REFUSED_URL,
            f"storage URL scheme {scheme + '://' if scheme else '(none)'} is not fetched: Orrery reads file:// "
            "(under ORRERY_MEDIA_FILE_ROOT) and http(s):// only; give a presigned https URL for cloud storage",
        )
    if scheme == "file":
        return await asyncio.to_thread(_read_file, url, limits)
    try:
        async with asyncio.timeout(limits.timeout_s):
            return await _download(url, limits)
    except TimeoutError:
        raise TransientError(
            f"fetching {_shown(url)} took longer than ORRERY_MEDIA_FETCH_TIMEOUT_S ({limits.timeout_s:g} s)"
        ) from None


def _shown(url: str) -> str:
    """The URL without its query (a presigned URL's signature) for messages that are stored."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"[:300]


def _too_large(size: int | None, limits: FetchLimits) -> MediaReadError:
    told = f"{size} bytes" if size is not None else "more"
    return MediaReadError(
        FailureCode.TOO_LARGE,
        f"the file is {told}, over ORRERY_MEDIA_MAX_BYTES ({limits.max_bytes}); it was not read",
    )


def _read_file(url: str, limits: FetchLimits) -> FetchedFile:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise MediaReadError(FailureCode.REFUSED_URL, f"file URL names a host ({parts.netloc[:80]}); none is read")
    root = limits.file_root.resolve()
    try:
        path = Path(unquote(parts.path)).resolve(strict=True)
    except FileNotFoundError:
        raise MediaReadError(FailureCode.MISSING, f"no file at {_shown(url)}") from None
    except (OSError, RuntimeError) as exc:  # a symlink loop, a name too long
        raise MediaReadError(FailureCode.UNREADABLE, f"cannot resolve {_shown(url)}: {exc}") from None
    if not path.is_relative_to(root):
        raise MediaReadError(
            FailureCode.REFUSED_URL, f"{_shown(url)} is outside ORRERY_MEDIA_FILE_ROOT ({root}); it is not read"
        )
    if not path.is_file():  # a directory, a device or a FIFO (which would block the read)
        raise MediaReadError(FailureCode.MISSING, f"{_shown(url)} is not a regular file")
    try:
        with path.open("rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size > limits.max_bytes:
                raise _too_large(size, limits)
            data = file.read(limits.max_bytes + 1)  # the file may have grown since
    except PermissionError:
        raise MediaReadError(FailureCode.UNREADABLE, f"{_shown(url)} cannot be read (permission denied)") from None
    if len(data) > limits.max_bytes:
        raise _too_large(None, limits)
    return FetchedFile(data, None)


async def _download(url: str, limits: FetchLimits) -> FetchedFile:
    async with httpx.AsyncClient(timeout=limits.timeout_s, follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            await _check_host(url, limits)
            try:
                async with client.stream("GET", url) as response:
                    if response.is_redirect:
                        location = response.headers.get("location")
                        if not location:
                            raise MediaReadError(FailureCode.UNREADABLE, f"{_shown(url)} redirects nowhere")
                        url = urljoin(url, location)
                        if urlsplit(url).scheme.lower() not in ("http", "https"):
                            raise MediaReadError(FailureCode.REFUSED_URL, f"a redirect leads to {_shown(url)}")
                        continue
                    _check_status(response, url)
                    return FetchedFile(await _body(response, limits), response.headers.get("content-type"))
            except httpx.TransportError as exc:  # refused, reset, a read timeout: may pass
                raise TransientError(f"fetching {_shown(url)} failed: {type(exc).__name__}: {exc}") from None
        raise MediaReadError(FailureCode.UNREADABLE, f"{_shown(url)} redirects more than {MAX_REDIRECTS} times")


def _check_status(response: httpx.Response, url: str) -> None:
    status = response.status_code
    if status < 300:
        return
    if status in (404, 410):
        raise MediaReadError(FailureCode.MISSING, f"no file at {_shown(url)} (HTTP {status})")
    if status in (408, 425, 429) or status >= 500:
        raise TransientError(f"fetching {_shown(url)}: HTTP {status}, the storage may answer later")
    raise MediaReadError(
        FailureCode.UNREADABLE,
        f"the storage refused {_shown(url)} (HTTP {status}); a presigned URL may have expired: upload it again",
    )


async def _body(response: httpx.Response, limits: FetchLimits) -> bytes:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_bytes:
        raise _too_large(int(declared), limits)
    chunks: list[bytes] = []
    received = 0
    async for chunk in response.aiter_raw(CHUNK_BYTES):  # raw: a gzip bomb stays its compressed size
        received += len(chunk)
        if received > limits.max_bytes:
            raise _too_large(None, limits)
        chunks.append(chunk)
    return b"".join(chunks)


async def _check_host(url: str, limits: FetchLimits) -> None:
    """The URL's host is allowed: listed in ORRERY_MEDIA_ALLOWED_HOSTS, or (with no list) every address it resolves
    to is public. (A name that resolves differently a moment later is the list's job to rule out.)"""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host:
        raise MediaReadError(FailureCode.REFUSED_URL, f"{_shown(url)} names no host")
    if limits.allowed_hosts:
        if host not in limits.allowed_hosts:
            raise MediaReadError(
                FailureCode.REFUSED_URL, f"host {host} is not in ORRERY_MEDIA_ALLOWED_HOSTS; {_shown(url)} not read"
            )
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, parts.port or 443)
    except OSError as exc:
        raise TransientError(f"cannot resolve the host of {_shown(url)}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])  # an IPv6 scope
        if not address.is_global:
            raise MediaReadError(
                FailureCode.REFUSED_URL,
                f"host {host} resolves to a non-public address ({address}); list it in ORRERY_MEDIA_ALLOWED_HOSTS "
                "to fetch from it",
            )
