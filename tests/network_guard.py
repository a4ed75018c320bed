"""Tests may only talk to this machine: a socket to any other host fails, and fails the test.

Why both: the guard raises at the attempt (so the code under test sees an error at once instead of a DNS or TCP
timeout), and because clients like `openai`/httpx turn any exception into their own "connection error" that the
code under test may retry or swallow, every blocked attempt is also recorded and the `network_guard` fixture fails
the test afterwards.

Allowed: unix sockets, loopback addresses (127.0.0.0/8, ::1, IPv4-mapped loopback), "localhost" and "" (the
wildcard used when binding). Installed once, when the conftest imports this module, so session fixtures are guarded
too.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest


class NonLocalNetworkBlocked(RuntimeError):
    """A test tried to reach a host other than this machine."""


_LOCAL_NAMES = {"", "localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
violations: list[str] = []


def is_local_host(host: object) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    name = host.strip("[]").split("%", 1)[0].rstrip(".").lower()
    if name in _LOCAL_NAMES:
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _refuse(host: object, port: object) -> NonLocalNetworkBlocked:
    target = f"{host}:{port}"
    violations.append(target)
    return NonLocalNetworkBlocked(f"tests may not open network connections to non-local hosts (tried {target})")


def _check_address(sock: socket.socket, address: Any) -> None:
    if sock.family == getattr(socket, "AF_UNIX", None):
        return
    if isinstance(address, tuple) and address and not is_local_host(address[0]):
        raise _refuse(address[0], address[1] if len(address) > 1 else "?")


_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex
_original_getaddrinfo = socket.getaddrinfo


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check_address(self, address)
    _original_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check_address(self, address)
    return _original_connect_ex(self, address)


def _guarded_getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
    if not is_local_host(host):
        raise _refuse(host, port)
    return _original_getaddrinfo(host, port, *args, **kwargs)


def install() -> None:
    """Patch socket connect/connect_ex/getaddrinfo for the rest of the process (idempotent)."""
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign,assignment]
    socket.getaddrinfo = _guarded_getaddrinfo


@pytest.fixture(autouse=True)
def network_guard() -> Iterator[list[str]]:
    """Fails the test if it attempted a non-local connection, even when the code under test swallowed the error.

    Yields the list of blocked attempts; a test that provokes one on purpose clears it after asserting.
    """
    violations.clear()
    yield violations
    if violations:
        blocked = ", ".join(violations)
        violations.clear()
        pytest.fail(f"the test tried to reach non-local hosts: {blocked}", pytrace=False)
