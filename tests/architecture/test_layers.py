"""The layering of DESIGN.md ("Layers"), checked on every import statement of the code, lazy ones included.

core/ (with settings) is the floor; agents/ and store/ sit on it and never import each other's upper neighbours or
jobs/; the job runtime (jobs/runtime/) knows no job and no agent; only run.py and cli/ sit on top.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = {"core", "settings", "agents", "store", "jobs", "cli", "prompts", "clients"}

FORBIDDEN: dict[str, set[str]] = {
    "core": OURS - {"core", "settings"},
    "settings": OURS - {"core", "settings"},
    "prompts": OURS - {"prompts", "core", "settings"},
    "store": {"agents", "jobs", "cli", "clients"},
    "agents": {"store", "jobs", "cli", "clients"},
    "jobs.runtime": {
        "agents",
        "cli",
        "clients",
        "jobs.catalog",
        "jobs.ingestion",
        "jobs.maintenance",
        "jobs.diagnostics",
        "jobs.resources",
    },
    "jobs": {"cli", "clients"},
}
"""Per layer (longest prefix wins), the packages or modules it must not import."""


def layer_of(module: str) -> str | None:
    matches = [layer for layer in FORBIDDEN if module == layer or module.startswith(layer + ".")]
    return max(matches, key=len) if matches else None


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported module) of every import statement in the file, at any depth, TYPE_CHECKING blocks included."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:  # `from jobs import ingestion` imports jobs.ingestion
                yield node.lineno, f"{node.module}.{alias.name}"


def sources() -> list[Path]:
    files = [ROOT / "settings.py"]
    for package in ("core", "agents", "store", "jobs", "prompts"):
        files += sorted((ROOT / package).rglob("*.py"))
    return files


def violations(files: list[Path], root: Path = ROOT) -> list[str]:
    found = []
    for path in files:
        importer = module_name(path, root)
        layer = layer_of(importer)
        if layer is None:
            continue
        for line, imported in imports(path):
            if imported.split(".")[0] not in OURS:
                continue
            if any(imported == bad or imported.startswith(bad + ".") for bad in FORBIDDEN[layer]):
                found.append(f"{path.relative_to(root)}:{line}: {importer} ({layer}) imports {imported}")
    return found


def test_no_import_runs_up_the_layers() -> None:
    assert violations(sources()) == []


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    """The walker is not vacuous: a store module importing an agent lazily, inside a function, is caught."""
    (tmp_path / "store").mkdir()
    probe = tmp_path / "store" / "probe.py"
    probe.write_text("def f() -> None:\n    from agents.llm import LLMClient\n")
    assert violations([probe], root=tmp_path) == [
        "store/probe.py:2: store.probe (store) imports agents.llm",
        "store/probe.py:2: store.probe (store) imports agents.llm.LLMClient",
    ]


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("jobs.runtime.worker", "jobs.runtime"),
        ("jobs.ingestion", "jobs"),
        ("core.vocabulary", "core"),
        ("cli.app", None),
    ],
)
def test_layers_by_longest_prefix(module: str, layer: str | None) -> None:
    assert layer_of(module) == layer


def import_circles(files: list[Path], root: Path = ROOT) -> list[list[str]]:
    """Circles among the job modules (jobs/, not its runtime; lazy imports included): the sets of modules that
    import each other round, each sorted, found as the strongly connected components of the import graph."""
    modules = {
        module_name(path, root): path
        for path in files
        if module_name(path, root).startswith("jobs.") and layer_of(module_name(path, root)) == "jobs"
    }
    edges = {m: sorted({i for _, i in imports(path) if i in modules and i != m}) for m, path in modules.items()}
    reaches = {m: _reachable(m, edges) for m in modules}
    circles = {tuple(sorted(m2 for m2 in modules if m2 in reaches[m] and m in reaches[m2])) for m in modules}
    return sorted(list(circle) for circle in circles if len(circle) > 1)


def _reachable(start: str, edges: dict[str, list[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(edges[start])
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += edges[module]
    return seen


def test_no_import_circle_between_job_modules() -> None:
    """Issue 18: the cycle's steps once imported each other (CycleArgs lived in cycle_report, the dispatcher imported
    insight lazily). The chain is declared in jobs/cycle.py, which imports no step; steps import only it."""
    assert import_circles(sources()) == []


def test_the_circle_check_sees_a_lazy_circle(tmp_path: Path) -> None:
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "a.py").write_text("from jobs.b import X\n")
    (tmp_path / "jobs" / "b.py").write_text("def f() -> None:\n    from jobs.a import Y\n")
    files = sorted((tmp_path / "jobs").glob("*.py"))
    assert import_circles(files, root=tmp_path) == [["jobs.a", "jobs.b"]]
