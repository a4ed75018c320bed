"""The one way tests run the real command line: `run.py` in a subprocess, with a clean environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def clean_env(**env: str) -> dict[str, str]:
    """This process's environment without any Orrery setting, backend URL or LLM endpoint (a developer's own
    OPENAI_API_KEY must never reach a test's subprocess), a wide terminal, plus `env`."""
    dropped = ("ORRERY_", "DATABASE_URL", "REDIS_URL", "OPENAI_", "NEO4J_", "WEAVIATE_")
    kept = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    return {**kept, "COLUMNS": "250", **env}


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python run.py ARGS` with clean_env() plus `env`."""
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args],
        capture_output=True,
        text=True,
        env=clean_env(**(env or {})),
        timeout=timeout,
        cwd=ROOT,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], expected: str, code: int = 2) -> None:
    """Exit `code`, stderr exactly one line `error: …` containing `expected`, and no traceback."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == code, output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    assert expected in lines[0], output


def invocation_here() -> str:
    """How the CLI names itself in hints when run by run_cli (cwd = the checkout): `.venv/bin/python run.py`, or
    `python run.py` when the venv's python is the one on PATH (an activated venv)."""
    on_path = shutil.which("python")
    if on_path is not None and Path(on_path).absolute() == Path(sys.executable).absolute():
        return "python run.py"
    return f"{os.path.relpath(sys.executable, ROOT)} run.py"
