"""The hosted CI workflows (.github/workflows/), checked here, where GitHub Actions does not run: each file against
GitHub's workflow schema (check-jsonschema's bundled copy), and the stores workflow against what it must test: the
servers deploy/compose.yaml's profiles run, reached with the settings the tests read, and the test files that need
them."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from settings import Settings, _env_name
from tests.deploy.test_compose import COMPOSE, RAW

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
STORES = ROOT / ".github" / "workflows" / "stores.yml"
SERVER_TESTS = (
    "tests/store/graph/test_contract.py",
    "tests/store/vector/test_contract.py",
    "tests/jobs/test_stores_end_to_end.py",
)


def schema_check(path: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def load(path: Path) -> dict[Any, Any]:
    document: dict[Any, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return document


@pytest.mark.parametrize("path", WORKFLOWS, ids=[path.name for path in WORKFLOWS])
def test_every_workflow_follows_githubs_workflow_schema(path: Path) -> None:
    result = schema_check(path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("break_it", "complaint"),
    [
        (lambda job: job.pop("runs-on"), "runs-on"),
        (lambda job: job.update(service=job.pop("services")), "service"),
        (lambda job: job["steps"][0].update(uses=["actions/checkout@v4"]), "uses"),
    ],
    ids=["no runs-on", "misspelt services", "uses a list"],
)
def test_the_schema_check_refuses_a_broken_workflow(break_it: Any, complaint: str, tmp_path: Path) -> None:
    """Not vacuous: the same check fails a workflow GitHub would refuse."""
    workflow = load(STORES)
    break_it(workflow["jobs"]["neo4j-and-weaviate"])
    broken = tmp_path / "broken.yml"
    broken.write_text(yaml.safe_dump(workflow), encoding="utf-8")
    result = schema_check(broken)
    assert result.returncode == 1 and complaint in result.stdout, result.stdout + result.stderr


def stores_job() -> dict[str, Any]:
    job: dict[str, Any] = load(STORES)["jobs"]["neo4j-and-weaviate"]
    return job


def test_it_runs_the_servers_compose_runs_with_the_same_settings() -> None:
    services = stores_job()["services"]
    compose = COMPOSE["services"]
    assert services["neo4j"]["image"] == compose["neo4j"]["image"] and compose["neo4j"]["image"].startswith("neo4j:5")
    assert services["weaviate"]["image"] == compose["weaviate"]["image"]
    secret = {"AUTHENTICATION_APIKEY_ALLOWED_KEYS"}
    compose_weaviate = {k: v for k, v in RAW["services"]["weaviate"]["environment"].items() if k not in secret}
    assert {k: v for k, v in services["weaviate"]["env"].items() if k not in secret} == compose_weaviate
    for service in services.values():
        assert "--health-cmd" in service["options"], "the job starts only once the server answers"


def test_the_tests_reach_the_services_with_the_settings_they_read(monkeypatch: pytest.MonkeyPatch) -> None:
    job = stores_job()
    [step] = [step for step in job["steps"] if "NEO4J_URI" in step.get("env", {})]
    env = step["env"]
    services = job["services"]
    assert services["neo4j"]["env"]["NEO4J_AUTH"] == f"{env['NEO4J_USER']}/{env['NEO4J_PASSWORD']}"
    assert services["weaviate"]["env"]["AUTHENTICATION_APIKEY_ALLOWED_KEYS"] == env["WEAVIATE_API_KEY"]
    neo4j, weaviate = urlsplit(env["NEO4J_URI"]), urlsplit(env["WEAVIATE_URL"])
    assert neo4j.scheme == "bolt", "bolt://: no routing table, whose addresses the container would choose"
    assert (neo4j.hostname, weaviate.hostname) == ("localhost", "localhost")  # the tests' network guard allows it
    assert f"{neo4j.port}:7687" in services["neo4j"]["ports"]
    assert f"{weaviate.port}:8080" in services["weaviate"]["ports"] and "50051:50051" in services["weaviate"]["ports"]
    for name in {_env_name(field) for field in Settings.model_fields}:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)
    assert (settings.neo4j_uri, settings.weaviate_url) == (env["NEO4J_URI"], env["WEAVIATE_URL"])


def test_it_runs_the_tests_that_need_the_servers_and_fails_when_they_skip() -> None:
    steps = stores_job()["steps"]
    [run] = [step["run"] for step in steps if "NEO4J_URI" in step.get("env", {})]
    words = shlex.split(run)
    assert words[:2] == ["bash", "scripts/test.sh"] and "-rs" in words
    for path in SERVER_TESTS:
        assert path in words and (ROOT / path).is_file(), path
    assert load(STORES)["defaults"]["run"]["shell"] == "bash"  # GitHub runs it as bash -eo pipefail: tee keeps failures
    guard = next(step["run"] for step in steps if step.get("name") == "No server case was skipped")
    assert "NEO4J_URI" in guard and "WEAVIATE_URL" in guard and "exit 1" in guard
    [setup] = [step for step in steps if step.get("uses", "").startswith("actions/setup-python")]
    assert setup["with"]["python-version"] == "3.11"  # pyproject.toml: requires-python ">=3.11,<3.12"
