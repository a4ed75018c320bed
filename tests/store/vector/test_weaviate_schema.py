"""The Weaviate adapter without a server: the collection it creates is the seed's class mapped by the documented
rules, WEAVIATE_URL is read as documented, and an unreachable server is one clear error."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from core.errors import PermanentError
from store.vector.base import VectorStoreUnavailable
from store.vector.weaviate import PROPERTIES, WeaviateVectorStore, connection_params, tenant_of

SEED_CLASS: dict[str, Any] = {
    "class": "UserKnowledgeItem",
    "description": "A unified searchable item representing textual content from any source entity.",
    "vectorizer": "none",
    "properties": [
        {"name": "externalId", "dataType": ["uuid"]},
        {"name": "userId", "dataType": ["string"], "indexInverted": True},
        {"name": "sourceEntityType", "dataType": ["string"], "indexInverted": True},
        {"name": "sourceEntityId", "dataType": ["uuid"], "indexInverted": True},
        {"name": "textContent", "dataType": ["text"]},
        {"name": "title", "dataType": ["text"], "indexInverted": True, "tokenization": "word"},
        {"name": "embeddingModelVersion", "dataType": ["string"], "indexInverted": True},
        {"name": "createdAt", "dataType": ["date"], "indexInverted": True},
        {"name": "importanceScore", "dataType": ["number"], "indexInverted": True},
        {"name": "tags", "dataType": ["text[]"], "indexInverted": True, "tokenization": "word"},
    ],
}
"""A copy of the seed's class (000, V9.7, part 3), checked against the seed document when it is beside the checkout."""

SEED = Path(__file__).resolve().parents[4] / "shared" / "seeds" / "000_fb0edbb23c9fde38.txt"


@pytest.mark.skipif(not SEED.exists(), reason="the seed documents (shared/) are not beside this checkout")
def test_the_copy_is_the_seeds_class() -> None:
    block = re.search(r"```json\n(.*?)\n```", SEED.read_text(encoding="utf-8"), re.DOTALL)
    assert block is not None
    assert json.loads(block.group(1)) == {"classes": [SEED_CLASS]}


def test_every_seed_property_is_created_by_the_documented_mapping() -> None:
    created = {p._to_dict()["name"]: p._to_dict() for p in PROPERTIES}
    assert list(created) == [p["name"] for p in SEED_CLASS["properties"]] + ["contentHash", "embeddingHash"]
    for seed in SEED_CLASS["properties"]:
        ours = created[seed["name"]]
        (seed_type,) = seed["dataType"]
        assert ours["dataType"] == ["text" if seed_type == "string" else seed_type], seed["name"]
        if seed_type == "string":  # ids and labels: whole-value matching, no keyword search
            assert (ours["tokenization"], ours["indexSearchable"]) == ("field", False), seed["name"]
        if "tokenization" in seed:
            assert ours["tokenization"] == seed["tokenization"] and ours["indexSearchable"], seed["name"]
        if seed.get("indexInverted"):
            assert ours["indexFilterable"] is True, seed["name"]
        if seed_type in ("date", "number"):
            assert ours["indexRangeFilters"] is True, seed["name"]
    assert (created["contentHash"]["indexFilterable"], created["contentHash"]["indexSearchable"]) == (False, False)


def test_the_url_gives_http_and_grpc_endpoints() -> None:
    assert connection_params("http://localhost:8080") == {
        "http_host": "localhost",
        "http_port": 8080,
        "http_secure": False,
        "grpc_host": "localhost",
        "grpc_port": 50051,
        "grpc_secure": False,
    }
    cloud = connection_params("https://abc.weaviate.cloud?grpc_host=grpc-abc.weaviate.cloud")
    assert (cloud["http_port"], cloud["grpc_host"], cloud["grpc_port"], cloud["grpc_secure"]) == (
        443,
        "grpc-abc.weaviate.cloud",
        443,
        True,
    )
    assert connection_params("http://w:9000?grpc_port=6000")["grpc_port"] == 6000


def test_a_user_id_that_cannot_name_a_tenant_is_refused() -> None:
    assert tenant_of("2f1c9a7e-8a49-4c1e-9a55-6f0f8f3e2b10") == "2f1c9a7e-8a49-4c1e-9a55-6f0f8f3e2b10"
    with pytest.raises(PermanentError, match="cannot name a Weaviate tenant"):
        tenant_of("user@example.com")


async def test_an_unreachable_server_is_one_transient_error_naming_it() -> None:
    with socket.socket() as http, socket.socket() as grpc:  # closed once the block ends: nothing listens there
        http.bind(("127.0.0.1", 0))
        grpc.bind(("127.0.0.1", 0))
        port, grpc_port = http.getsockname()[1], grpc.getsockname()[1]
    space = type("Space", (), {"model_version": "m", "dimension": 3})()
    started = time.monotonic()
    with pytest.raises(VectorStoreUnavailable, match=rf"Weaviate at http://127.0.0.1:{port}: cannot connect"):
        await WeaviateVectorStore.connect(f"http://127.0.0.1:{port}?grpc_port={grpc_port}", space, timeout_s=2)
    assert time.monotonic() - started < 10
