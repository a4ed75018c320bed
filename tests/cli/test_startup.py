"""A liveness probe and the job list start light: `run.py health`, `jobs list` and `--help` load no LLM client, no
agent and no model or store client library (issue 11: every command used to import openai, ~1.4 s)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.cli.runner import ROOT, clean_env

HEAVY = ("openai", "agents", "prompts", "torch", "sentence_transformers", "neo4j", "weaviate")

PROBE = """
import json, runpy, sys
sys.argv = ["run.py", *sys.argv[1:]]
try:
    runpy.run_path("run.py", run_name="__main__")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def loaded(*args: str, env: dict[str, str]) -> tuple[object, set[str]]:
    """(exit code, top-level packages in sys.modules) after `run.py ARGS` ran in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=clean_env(**env), cwd=ROOT, timeout=60
    )
    report = json.loads(result.stderr.strip().splitlines()[-1])
    return report["code"], {name.split(".")[0] for name in report["modules"]}


@pytest.mark.parametrize("args", [("--help",), ("jobs", "list"), ("health",), ("jobs", "--help")])
def test_light_commands_import_no_llm_client_agent_or_store_client(args: tuple[str, ...], redis_url: str) -> None:
    code, packages = loaded(*args, env={"REDIS_URL": redis_url})
    assert code in (0, 1)  # health: 1 when no worker is live, which is its job to say
    assert packages.isdisjoint(HEAVY), sorted(packages & set(HEAVY))


def test_importing_an_agent_does_load_openai() -> None:
    """Not vacuous: an agent module brings the openai client with it, so a command importing one would be seen."""
    code = "import sys, agents.ingestion; print('openai' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.stdout.strip() == "True"
