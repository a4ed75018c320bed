"""What a person reads (issue 21, items 5, 6 and 12): every command's help has examples written as a command that
works here, flags read as flags, `--json` wherever a script needs it, and tables at 80 columns never cut an id or a
name."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cli import app
from jobs.catalog import JOBS
from tests.cli.runner import ROOT, invocation_here, run_cli

COMMAND = typer.main.get_command(app)


def leaves(group: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command a person can run, as its path of names (typer's groups carry `commands`)."""
    commands = getattr(group, "commands", None)
    if commands:
        return [leaf for name, sub in commands.items() for leaf in leaves(sub, (*path, name))]
    return [path]


COMMANDS = leaves(COMMAND)


def help_of(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_has_examples_and_plain_flags(path: tuple[str, ...]) -> None:
    text = help_of(path)
    assert "<bool>" not in text, "a flag shown as if it took a value"
    assert re.search(r"^\s*Examples?:", text, re.MULTILINE), f"no example in `{' '.join(path)} --help`"
    examples = text.split("Example", 1)[1]
    assert "run.py" in examples, examples
    assert max(len(line) for line in text.splitlines()) <= 80


def test_json_output_where_scripts_need_it() -> None:
    wanted = [("doctor",), ("health",), ("migrate",), ("sync", "run"), ("rebuild",), ("reembed",), ("jobs", "runs")]
    for path in wanted:
        assert "--json" in help_of(path), path


def test_command_examples_name_the_venv_when_it_is_not_active(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh clone has no `python` with Orrery's packages: hints say `.venv/bin/python run.py`."""
    monkeypatch.chdir(ROOT)
    assert f"{invocation_here()} worker --processes 4" in help_of(("worker",))


def test_jobs_list_at_80_columns_shows_every_name_whole() -> None:
    out = run_cli("jobs", "list", env={"COLUMNS": "80"}).stdout
    assert "…" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
    for spec in JOBS.all():
        assert re.search(rf"(^|[\s│]){re.escape(spec.name)}([\s│]|$)", out, re.MULTILINE), spec.name


async def test_seed_sample_and_queues_at_80_columns_keep_ids_whole(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "ORRERY_DATA_DIR": str(tmp_path), "COLUMNS": "80"}
    seeded = json.loads(run_cli("seed-sample", "--json", env=env).stdout)
    out = run_cli("seed-sample", env=env).stdout
    assert "…" not in out and max(len(line) for line in out.splitlines()) <= 80
    assert f"user id: {seeded['user_id']}" in out
    for conversation in seeded["conversations"]:
        assert conversation["conversation_id"] in out and conversation["key"] in out
    queues = run_cli("jobs", "queues", env=env).stdout
    assert "…" not in queues and "interactive" in queues and "batch" in queues
