"""The documents tell the truth about the code: every setting is in the configuration reference, every command a
page shows exists with the options it shows, every link resolves inside the repository, and the README stays a
short front door that names every command."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer

from cli import app
from settings import Settings, _env_name

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
OPERATIONS = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
COMMAND = typer.main.get_command(app)
README_MAX_LINES = 300


def test_every_setting_is_in_the_configuration_reference() -> None:
    missing = [_env_name(field) for field in Settings.model_fields if f"`{_env_name(field)}`" not in OPERATIONS]
    assert missing == [], f"document these settings in docs/operations.md, Configuration: {missing}"


def test_the_readme_is_a_short_front_door() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES, "reference material belongs in docs/"
    for command in ("bash scripts/demo.sh", "bash scripts/test.sh", "run.py worker", "run.py trigger", "jobs show"):
        assert command in text, f"the README's walkthrough lost `{command}`"
    table = text.split("## Everyday commands", 1)[1].split("\n## ", 1)[0]
    top_level = sorted(getattr(COMMAND, "commands", {}))
    assert [name for name in top_level if f"`{name}" not in table and f"/ {name}" not in table] == []


def _command_lines(text: str) -> list[list[str]]:
    """Every `run.py …` command shown in a code block, as arguments after run.py (placeholders kept)."""
    found = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.DOTALL):
        for line in block.splitlines():
            if "run.py " not in line or line.lstrip().startswith("#"):
                continue
            command = line.split("run.py ", 1)[1].split("#", 1)[0].split("&&", 1)[0].split("|", 1)[0]
            try:
                found.append(shlex.split(command.replace("[", " ").replace("]", " ")))
            except ValueError:
                found.append(command.split())
    return found


def _resolve(words: list[str]) -> tuple[Any, list[str]] | None:
    """The click command the words name, and the options given to it; None when a word names no command."""
    command: Any = COMMAND
    rest = list(words)
    while rest and getattr(command, "commands", None):
        sub = command.commands.get(rest[0])
        if sub is None:
            return None
        command, rest = sub, rest[1:]
    options = [word.split("=", 1)[0] for word in rest if word.startswith("-")]
    return command, options


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_command_shown_exists_with_its_options(page: Path) -> None:
    problems = []
    for words in _command_lines(page.read_text(encoding="utf-8")):
        if not words:
            continue
        resolved = _resolve(words)
        if resolved is None:
            problems.append(f"no command `run.py {' '.join(words)}`")
            continue
        command, options = resolved
        known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        unknown = [option for option in options if option not in known and option != "-"]
        if unknown:
            problems.append(f"`run.py {' '.join(words)}`: no option {unknown}")
    assert problems == [], f"{page.name}: " + "; ".join(problems)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_slug(line.lstrip("#")) for line in page.read_text(encoding="utf-8").splitlines() if line.startswith("#")}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_links_resolve_inside_the_repository(page: Path) -> None:
    problems = []
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        if ROOT not in linked.parents and linked != ROOT:
            problems.append(f"{target}: points outside the repository")
        elif not linked.exists():
            problems.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            problems.append(f"{target}: no heading with that anchor")
    assert problems == [], f"{page.name}: " + "; ".join(problems)


def test_the_repository_table_of_docs_store_md_is_the_code() -> None:
    """docs/store.md lists every public function of every repository module, and nothing that is gone."""
    import importlib

    text = (ROOT / "docs" / "store.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(\w+)` \| `[^|]+` \| (.+) \|$", text, re.MULTILINE))
    modules = sorted(path.stem for path in (ROOT / "store" / "repos").glob("*.py") if not path.stem.startswith("_"))
    assert sorted(rows) == modules, "one row per module of store/repos/"
    problems = []
    for name in modules:
        module = importlib.import_module(f"store.repos.{name}")
        listed = set(re.findall(r"`(\w+)(?:\([^)]*\))?`", rows[name]))
        public = {
            attr
            for attr, value in vars(module).items()
            if not attr.startswith("_")
            and callable(value)
            and getattr(value, "__module__", "") == module.__name__
            and not isinstance(value, type)
        }
        if listed != public:
            problems.append(f"{name}: gone {sorted(listed - public)}, missing {sorted(public - listed)}")
    assert problems == [], "update docs/store.md's repository table: " + "; ".join(problems)


CODE_PATH = re.compile(r"`((?:agents|bench|cli|clients|core|deploy|jobs|prompts|scripts|store|tests)/[^`\s]*)`")
WORKED_EXAMPLE = "agents.md"
"""Its worked example adds a hypothetical agent ("reflection"), whose files do not exist by design."""
OPERATOR_FILES = {"deploy/.env"}
"""Files the operator creates (from deploy/.env.example), not the repository."""


@pytest.mark.parametrize("page", [p for p in PAGES if p.name != WORKED_EXAMPLE], ids=lambda page: page.name)
def test_every_code_path_a_page_names_exists(page: Path) -> None:
    """A page names only modules, folders and functions that exist (a deleted repository or module listed in
    docs/store.md fails here): `store/repos/users.py`, `store/graph/`, `store/cycles.close_cycle`; patterns with
    `<…>`, `*` or `NNNN` are templates."""
    import importlib

    problems = []
    for path in sorted(set(CODE_PATH.findall(page.read_text(encoding="utf-8")))):
        path = re.split(r"[ (#:]", path, maxsplit=1)[0]
        if any(mark in path for mark in ("<", "*", "NNNN", "N_name")):
            continue
        if (ROOT / path).exists() or path in OPERATOR_FILES:
            continue
        module, _, attr = path.rpartition(".")
        if module and "/" in module and not path.endswith((".py", ".md", ".sql", ".ts", ".json", ".yaml", ".txt")):
            try:
                if hasattr(importlib.import_module(module.replace("/", ".")), attr):
                    continue
            except ImportError:
                pass
        problems.append(path)
    assert problems == [], f"{page.name} names code that does not exist: {problems}"
