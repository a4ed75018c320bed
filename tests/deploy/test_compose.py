"""deploy/compose.yaml, the Dockerfile and the monitoring files, checked without running any image.

No container runtime runs on the machines this project is developed and tested on, so what can go wrong in these
files is checked here instead: the compose file against the Compose Specification's JSON schema; every environment
variable an Orrery container gets is a setting `Settings` reads, and the values validate; every command is one the
CLI has, with options it accepts; health checks, the migrate dependency, the drain's grace period; Prometheus scrapes
the port the workers serve; the dashboard queries only metrics Orrery serves, by labels they have.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import typer.main
import yaml
from typer.core import TyperGroup

from cli.app import app
from settings import Settings, _env_name
from tests.deploy.metric_names import HISTOGRAMS, METRICS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SERVICES = {"postgres", "redis", "neo4j", "weaviate", "migrate", "worker", "prometheus", "grafana"}
PROFILES = {"neo4j": ["neo4j"], "weaviate": ["weaviate"]}
"""The opt-in services and their profiles; every other service runs by default."""
ORRERY_SERVICES = ("migrate", "worker")

SETTING_NAMES = {_env_name(field) for field in Settings.model_fields}

_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: str, required: set[str] | None = None) -> str:
    """Resolve compose's `${NAME:-default}` to the default and `${NAME:?message}` to a sample value (noting NAME as
    required), as with an empty deploy/.env; `$$` is a literal `$`."""

    def replace(match: re.Match[str]) -> str:
        op = match["op"] or ""
        if op.endswith("?"):
            if required is not None:
                required.add(match["name"])
            return f"sample-{match['name'].lower().replace('_', '-')}"
        return match["arg"] if op.endswith("-") else ""

    parts = value.split("$$")
    return "$".join(_VARIABLE.sub(replace, part) for part in parts)


def resolved(node: Any, required: set[str] | None = None) -> Any:
    """The whole document with every string interpolated."""
    if isinstance(node, dict):
        return {key: resolved(value, required) for key, value in node.items()}
    if isinstance(node, list):
        return [resolved(value, required) for value in node]
    return interpolate(node, required) if isinstance(node, str) else node


RAW = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
REQUIRED: set[str] = set()
COMPOSE = resolved(RAW, REQUIRED)


def environment(service: str) -> dict[str, str]:
    env = COMPOSE["services"][service].get("environment", {})
    assert isinstance(env, dict), f"{service}: write environment as a mapping"
    return {name: "" if value is None else str(value) for name, value in env.items()}


# --- the Dockerfile ---------------------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, rest = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def exec_form(keyword: str) -> list[str]:
    found = [json.loads(args) for kw, args in final_stage() if kw == keyword]
    assert len(found) == 1 and isinstance(found[0], list), f"one exec-form (JSON array) {keyword} in the image"
    return list(found[0])


ENTRYPOINT = exec_form("ENTRYPOINT")


# --- the command line -------------------------------------------------------------------------------------------


def check_cli(argv: list[str]) -> str:
    """Parse `run.py ARGV` with the real CLI (unknown commands and bad options raise); the command's path."""
    command = typer.main.get_command(app)
    path: list[str] = []
    args = list(argv)
    while isinstance(command, TyperGroup):
        assert args and args[0] in command.commands, f"`run.py {' '.join(argv)}`: no such command"
        path.append(args[0])
        command = command.commands[args.pop(0)]
    command.make_context(" ".join(["run.py", *path]), args)
    return " ".join(path)


def run_py_args(argv: list[str]) -> list[str]:
    """The arguments given to run.py of a full command line `python /app/run.py …` (the image's entrypoint)."""
    assert argv[: len(ENTRYPOINT)] == ENTRYPOINT, f"{argv} does not run the image's entrypoint {ENTRYPOINT}"
    return argv[len(ENTRYPOINT) :]


def test_compose_file_follows_the_compose_specification() -> None:
    """Against check-jsonschema's copy of the Compose Specification's JSON schema, which `docker compose` follows."""
    command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
    result = subprocess.run([*command, str(DEPLOY / "compose.yaml")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_services_are_the_servers_orrery_needs_and_its_own() -> None:
    services = COMPOSE["services"]
    assert set(services) == SERVICES
    assert {name: service["profiles"] for name, service in services.items() if "profiles" in service} == PROFILES
    assert services["postgres"]["image"].startswith("pgvector/pgvector:pg16")
    assert services["neo4j"]["image"].startswith("neo4j:5")
    assert services["weaviate"]["environment"]["DEFAULT_VECTORIZER_MODULE"] == "none"
    redis_command = services["redis"]["command"]
    assert redis_command[redis_command.index("--appendonly") + 1] == "yes", "Redis keeps queued jobs in its AOF"
    assert redis_command[redis_command.index("--maxmemory-policy") + 1] == "noeviction", "never evict queued jobs"
    for name in ORRERY_SERVICES:
        assert services[name]["image"] == services["worker"]["image"]
        assert services[name]["build"] == {"context": "..", "dockerfile": "Dockerfile"}
        assert (DEPLOY / services[name]["build"]["context"] / "Dockerfile").is_file()


def test_every_variable_orrery_containers_get_is_a_setting_and_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    for service in ORRERY_SERVICES:
        env = environment(service)
        unknown = sorted(set(env) - SETTING_NAMES)
        assert unknown == [], f"{service}: Settings reads no variable named {unknown} (settings.py; a typo?)"
        image_env = {name: value for name, value in dockerfile_env().items() if name.startswith("ORRERY_")}
        assert sorted(set(image_env) - SETTING_NAMES) == [], "the Dockerfile's ENV sets an unknown ORRERY_ variable"
        for name in SETTING_NAMES:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.chdir(DEPLOY)  # no stray .env from the repository root
        for name, value in {**image_env, **env}.items():
            monkeypatch.setenv(name, value)
        settings = Settings()
        assert settings.database_url and settings.redis_url, f"{service} must use the compose file's servers"
        assert settings.embeddings_base_url
        assert not settings.llm_is_scripted, f"{service} would answer from scripted samples in production"
        assert settings.neo4j_uri is None and settings.weaviate_url is None, "by default: the graph and pgvector"


def opt_in() -> dict[str, str]:
    """The store variables deploy/.env.example gives for the neo4j and weaviate profiles (its commented lines)."""
    example = (DEPLOY / ".env.example").read_text(encoding="utf-8").splitlines()
    pairs = [line.lstrip("# ").split("=", 1) for line in example if re.match(r"#\s+[A-Z][A-Z0-9_]*=\S", line)]
    return {name: value for name, value in pairs}


def test_the_profiles_start_neo4j_and_weaviate_where_the_example_points_the_same_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = COMPOSE["services"]
    values = opt_in()
    assert values["COMPOSE_PROFILES"].split(",") == sorted({p for profiles in PROFILES.values() for p in profiles})
    neo4j, weaviate = urlsplit(values["NEO4J_URI"]), urlsplit(values["WEAVIATE_URL"])
    assert neo4j.hostname == "neo4j" and f"{neo4j.port}:{neo4j.port}" in services["neo4j"]["ports"][0]
    command = services["weaviate"]["command"]
    assert weaviate.hostname == "weaviate" and str(weaviate.port) == command[command.index("--port") + 1]
    # the servers take the secrets the workers are given (`:-`: compose reads inactive profiles' services too)
    workers = RAW["x-orrery-environment"]
    assert (workers["NEO4J_PASSWORD"], workers["WEAVIATE_API_KEY"]) == ("${NEO4J_PASSWORD:-}", "${WEAVIATE_API_KEY:-}")
    assert RAW["services"]["neo4j"]["environment"]["NEO4J_AUTH"] == "neo4j/${NEO4J_PASSWORD:-}"
    assert RAW["services"]["weaviate"]["environment"]["AUTHENTICATION_APIKEY_ALLOWED_KEYS"] == "${WEAVIATE_API_KEY:-}"
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(DEPLOY)
    for name, value in {**environment("worker"), **values, "NEO4J_PASSWORD": "p" * 8, "WEAVIATE_API_KEY": "k"}.items():
        if name != "COMPOSE_PROFILES":
            monkeypatch.setenv(name, value)
    settings = Settings()
    assert (settings.neo4j_uri, settings.weaviate_url) == (values["NEO4J_URI"], values["WEAVIATE_URL"])


def test_every_required_secret_is_in_the_env_example() -> None:
    example = (DEPLOY / ".env.example").read_text(encoding="utf-8")
    listed = {line.split("=", 1)[0] for line in example.splitlines() if "=" in line and not line.startswith("#")}
    assert REQUIRED, "the compose file takes its secrets from deploy/.env"
    assert sorted(REQUIRED - listed) == []
    assert "OPENAI_API_KEY" in REQUIRED and "POSTGRES_PASSWORD" in REQUIRED


def test_every_orrery_command_is_one_the_cli_has() -> None:
    services = COMPOSE["services"]
    assert check_cli([*exec_form("CMD")]) == "worker"
    assert check_cli(services["migrate"]["command"]) == "migrate"
    assert check_cli(services["worker"]["command"]) == "worker"
    assert check_cli(run_py_args(services["worker"]["healthcheck"]["test"][1:])) == "health"
    with pytest.raises(typer.TyperException):  # the check itself refuses what the CLI would
        check_cli(["worker", "--no-such-option"])
    with pytest.raises(AssertionError):
        check_cli(["no-such-command"])


def test_health_checks_and_start_order() -> None:
    services = COMPOSE["services"]
    for name, service in services.items():
        check = service.get("healthcheck", {})
        if name == "migrate":
            assert check == {"disable": True} and service["restart"] == "no", "migrate runs once and exits"
            continue
        assert check.get("test", [None])[0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"
    assert services["worker"]["healthcheck"]["test"][0] == "CMD"
    migrate_deps, worker_deps = services["migrate"]["depends_on"], services["worker"]["depends_on"]
    assert migrate_deps["postgres"]["condition"] == "service_healthy"
    assert worker_deps["migrate"]["condition"] == "service_completed_successfully"
    assert worker_deps["postgres"]["condition"] == worker_deps["redis"]["condition"] == "service_healthy"
    for optional in PROFILES:  # without their profile the deployment must still start
        assert worker_deps[optional] == {"condition": "service_started", "required": False}


def _seconds(duration: str) -> float:
    """A compose duration such as 45s, 1m30s or 2m."""
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", duration)
    assert parts and duration, f"not a duration: {duration!r}"
    hours, minutes, seconds = (float(part or 0) for part in parts.groups())
    return hours * 3600 + minutes * 60 + seconds


def test_workers_drain_on_sigterm_within_their_stop_grace_period() -> None:
    worker = COMPOSE["services"]["worker"]
    assert worker["stop_signal"] == "SIGTERM"
    grace = float(
        environment("worker").get("ORRERY_SHUTDOWN_GRACE_S", Settings.model_fields["shutdown_grace_s"].default)
    )
    assert _seconds(worker["stop_grace_period"]) > grace, "Docker would SIGKILL jobs still inside the drain"
    assert int(worker["deploy"]["replicas"]) >= 2, "the deployment runs several workers by default"


def test_prometheus_scrapes_the_port_every_worker_serves() -> None:
    worker = COMPOSE["services"]["worker"]
    port = int(environment("worker")["ORRERY_METRICS_PORT"])
    assert str(port) in [str(p) for p in worker["expose"]]
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text(encoding="utf-8"))
    targets = [
        (name, sd["port"])
        for job in prometheus["scrape_configs"]
        for sd in job.get("dns_sd_configs", [])
        for name in sd["names"]
    ]
    assert targets == [("worker", port)], "one A-record lookup of the worker service finds every replica"


def test_bind_mounts_point_at_files_in_deploy() -> None:
    mounts = [
        (name, volume.split(":")[0])
        for name, service in COMPOSE["services"].items()
        for volume in service.get("volumes", [])
        if volume.startswith("./")
    ]
    assert mounts, "Prometheus and Grafana read their configuration from deploy/"
    assert [(name, source) for name, source in mounts if not (DEPLOY / source).exists()] == []


def _expressions(panels: list[dict[str, Any]]) -> Iterator[str]:
    for panel in panels:
        yield from (target["expr"] for target in panel.get("targets", []))
        yield from _expressions(panel.get("panels", []))


def _metric(series: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if series.endswith(suffix) and series.removesuffix(suffix) in HISTOGRAMS:
            return series.removesuffix(suffix)
    return series


def test_dashboard_queries_only_orrery_metrics_by_their_labels() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "orrery.json").read_text(encoding="utf-8"))
    expressions = list(_expressions(dashboard["panels"]))
    assert expressions
    used: set[str] = set()
    for expr in expressions:
        series = set(re.findall(r"\b[a-z_:][a-z0-9_:]*(?=\s*[{\[])|\b[a-z_:][a-z0-9_:]*(?=\s*\))", expr))
        metrics = {_metric(name) for name in re.findall(r"\borrery_[a-z0-9_]+", expr)}
        assert metrics, f"a panel queries no Orrery metric: {expr}"
        unknown = {name for name in series if name.startswith("orrery_") and _metric(name) not in METRICS}
        assert unknown == set() and metrics <= set(METRICS), f"not a metric Orrery serves: {expr}"
        labels = set().union(*(METRICS[m] for m in metrics)) | ({"le"} if metrics & HISTOGRAMS else set())
        for group in re.findall(r"\bby\s*\(([^)]*)\)", expr):
            named = {label.strip() for label in group.split(",") if label.strip()}
            assert named <= labels, f"{sorted(named - labels)} is no label of {sorted(metrics)}: {expr}"
        for label in re.findall(r"[{,]\s*([a-z_]+)\s*=~?", expr):
            assert label in labels, f"{label!r} is no label of {sorted(metrics)}: {expr}"
        used |= metrics
    assert sorted(set(METRICS) - used) == [], "every metric has a panel"


def test_grafana_provisions_the_dashboard_and_its_data_source() -> None:
    grafana = DEPLOY / "grafana"
    source = yaml.safe_load((grafana / "provisioning" / "datasources" / "prometheus.yml").read_text(encoding="utf-8"))
    provider = yaml.safe_load((grafana / "provisioning" / "dashboards" / "orrery.yml").read_text(encoding="utf-8"))
    dashboard = json.loads((grafana / "dashboards" / "orrery.json").read_text(encoding="utf-8"))
    uid = source["datasources"][0]["uid"]
    assert source["datasources"][0]["url"] == "http://prometheus:9090"
    uids = {target["datasource"]["uid"] for panel in dashboard["panels"] for target in panel.get("targets", [])}
    assert uids == {uid}
    mounted = {volume.split(":")[1] for volume in COMPOSE["services"]["grafana"]["volumes"]}
    assert provider["providers"][0]["options"]["path"] in mounted


# --- the image --------------------------------------------------------------------------------------------------


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, args in final_stage():
        if keyword == "ENV":
            for pair in shlex.split(args):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def test_image_runs_the_worker_as_a_non_root_user_and_drains_on_sigterm() -> None:
    stage = final_stage()
    assert stage[0] == ("FROM", "python:3.11-slim")
    users = [args for keyword, args in stage if keyword == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image runs as a non-root user"
    assert check_cli([*exec_form("CMD")]) == "worker" and ENTRYPOINT[0] == "python"
    assert ("STOPSIGNAL", "SIGTERM") in stage
    health = [args for keyword, args in stage if keyword == "HEALTHCHECK"]
    assert len(health) == 1 and " CMD " in f" {health[0]}"
    assert check_cli(run_py_args(json.loads(health[0].split("CMD", 1)[1]))) == "health"


def test_image_installs_the_locked_production_dependencies_only() -> None:
    runs = " ".join(args for keyword, args in dockerfile() if keyword == "RUN")
    assert "-r /src/requirements/prod.txt" in runs, "the image installs from the lock"
    assert "--no-deps" in runs, "Orrery's own install must not resolve anything outside the lock"
    assert "requirements/dev.txt" not in runs and "local-embeddings" not in runs
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    copied = [args.split()[:-1] for keyword, args in dockerfile() if keyword == "COPY" and "--from" not in args]
    for sources in copied:
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file"
            top = source.split("/")[0]
            assert f"!{source}" in ignored or f"!{top}/" in ignored, f"{source} is left out by .dockerignore"
