"""Running node for the interop tests: the packages come from tests/interop/package.json (npm ci, run by
scripts/bootstrap.sh when node is installed); without node or without them, these tests skip and say why."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

INTEROP_DIR = Path(__file__).resolve().parent
ROOT = INTEROP_DIR.parents[1]
NODE_MODULES = INTEROP_DIR / "node_modules"


def require_node(*packages: str) -> str:
    """The node executable, or a skip naming what is missing and how to get it."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the TypeScript/Prisma interop checks need Node.js >= 20")
    missing = [name for name in packages if not (NODE_MODULES / name / "package.json").exists()]
    if missing:
        pytest.skip(
            f"npm packages missing in tests/interop ({', '.join(missing)}): run scripts/bootstrap.sh "
            "or `npm ci --prefix tests/interop`"
        )
    return node


def run_node(*args: str, stdin: str | None = None, timeout: float = 60) -> str:
    """Run node in tests/interop (so its node_modules resolve); a non-zero exit fails the test with stderr."""
    node = require_node()
    done = subprocess.run([node, *args], input=stdin, capture_output=True, text=True, cwd=INTEROP_DIR, timeout=timeout)
    assert done.returncode == 0, f"node {' '.join(args)} failed ({done.returncode}):\n{done.stderr}"
    return done.stdout


PRISMA_7 = "@prisma/prisma-schema-wasm"
PRISMA_6 = "prisma-schema-wasm-6"


def prisma_engine(schema: str, package: str = PRISMA_7) -> dict[str, Any]:
    """Validate `schema` with Prisma's schema engine (wasm): {"valid": True, "dmmf": …} or {"valid": False, "error"}."""
    require_node(package)
    result: dict[str, Any] = json.loads(run_node("prisma_engine.cjs", package, stdin=schema))
    return result
