"""The test-suite guard: only this machine is reachable, and trying anything else fails loudly."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from agents.scripted_llm import ScriptedLLMServer
from tests.network_guard import NonLocalNetworkBlocked, is_local_host

REPO = Path(__file__).resolve().parents[2]


def test_connecting_to_a_private_address_is_refused(network_guard: list[str]) -> None:
    with pytest.raises(NonLocalNetworkBlocked, match=r"10\.1\.2\.3:80"):
        socket.create_connection(("10.1.2.3", 80), timeout=1)
    assert network_guard == ["10.1.2.3:80"]
    network_guard.clear()  # provoked on purpose; otherwise the guard fails this test at teardown


def test_resolving_a_public_name_is_refused(network_guard: list[str]) -> None:
    with pytest.raises(NonLocalNetworkBlocked, match=r"example\.com:443"):
        socket.getaddrinfo("example.com", 443)
    network_guard.clear()


async def test_asyncio_connections_are_guarded_too(network_guard: list[str]) -> None:
    with pytest.raises(NonLocalNetworkBlocked):
        await asyncio.open_connection("93.184.216.34", 80)
    assert network_guard == ["93.184.216.34:80"]
    network_guard.clear()


def test_a_swallowed_attempt_still_fails_the_test(tmp_path: Path) -> None:
    """Clients such as openai wrap every exception in their own connection error; the test must fail anyway."""
    (tmp_path / "conftest.py").write_text("from tests.network_guard import install, network_guard\ninstall()\n")
    (tmp_path / "test_inner.py").write_text(
        "import socket\n\n"
        "def test_swallows():\n"
        "    try:\n"
        "        socket.create_connection(('192.0.2.1', 443), timeout=1)\n"
        "    except Exception:\n"
        "        pass\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0, result.stdout
    assert "1 passed, 1 error" in result.stdout
    assert "tried to reach non-local hosts: 192.0.2.1:443" in result.stdout


def test_local_connections_work() -> None:
    with ScriptedLLMServer() as server:
        port = urlsplit(server.base_url).port
        assert port is not None
        with socket.create_connection(("127.0.0.1", port), timeout=1), socket.create_connection(("localhost", port)):
            pass
    with tempfile.TemporaryDirectory(dir="/tmp") as directory, socket.socket(socket.AF_UNIX) as listener:
        path = os.path.join(directory, "guard.sock")
        listener.bind(path)
        listener.listen()
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("", True),
        (None, True),
        (b"localhost", True),
        ("10.1.2.3", False),
        ("example.com", False),
        ("::ffff:8.8.8.8", False),
        ("0.0.0.0", False),
    ],
)
def test_which_hosts_count_as_local(host: object, local: bool) -> None:
    assert is_local_host(host) is local
