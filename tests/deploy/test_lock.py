"""The lock files cover what pyproject.toml declares, at versions its specifiers allow, and production and dev agree.

requirements/prod.txt is what the container image installs, requirements/dev.txt what scripts/bootstrap.sh (and so
CI) installs; both are compiled by scripts/lock.sh. A dependency added to pyproject.toml without re-running the lock
script fails here by name instead of surfacing as an ImportError on a fresh machine.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;]+)")

EXTRAS = tuple(PYPROJECT["project"]["optional-dependencies"])
"""requirements/dev.txt holds every extra: scripts/bootstrap.sh installs them all, so the tests can use each."""
IMAGE_EXTRAS = tuple(extra for extra in ("tracing",) if extra in EXTRAS)
"""Extras the production image installs too (scripts/lock.sh compiles them into requirements/prod.txt)."""


def pins(lock: str) -> dict[str, Version]:
    """Package name → pinned version of a requirements file compiled by uv (comments and markers ignored)."""
    found: dict[str, Version] = {}
    for line in (ROOT / "requirements" / lock).read_text(encoding="utf-8").splitlines():
        match = PIN.match(line)
        if match:
            found[canonicalize_name(match["name"])] = Version(match["version"])
    return found


def declared(*extras: str) -> list[Requirement]:
    requirements = [Requirement(text) for text in PYPROJECT["project"]["dependencies"]]
    for extra in extras:
        requirements += [Requirement(text) for text in PYPROJECT["project"]["optional-dependencies"][extra]]
    return requirements


def unlocked(requirements: list[Requirement], locked: dict[str, Version]) -> list[str]:
    """Each requirement missing from the lock or pinned at a version its specifier refuses."""
    problems = []
    for requirement in requirements:
        version = locked.get(canonicalize_name(requirement.name))
        if version is None:
            problems.append(f"{requirement.name}: not in the lock")
        elif not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement.name}: locked {version}, pyproject wants {requirement.specifier}")
    return problems


def test_prod_lock_covers_the_core_dependencies_and_the_image_extras() -> None:
    problems = unlocked(declared(*IMAGE_EXTRAS), pins("prod.txt"))
    assert problems == [], "run `bash scripts/lock.sh` and commit requirements/"


def test_dev_lock_covers_core_and_every_extra_bootstrap_installs() -> None:
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text(encoding="utf-8")
    assert "pip install --quiet -r requirements/dev.txt" in bootstrap
    assert "--no-deps -e ." in bootstrap
    assert {"dev", "local-embeddings"} <= set(EXTRAS)
    assert unlocked(declared(*EXTRAS), pins("dev.txt")) == [], "run `bash scripts/lock.sh` and commit requirements/"


def test_production_lock_has_no_local_model_and_dev_pins_the_same_versions() -> None:
    prod, dev = pins("prod.txt"), pins("dev.txt")
    for name in ("torch", "sentence-transformers", "pytest"):
        assert name not in prod, f"{name} is for the demo and tests; the image must not install it"
    differing = {name: (version, dev[name]) for name, version in prod.items() if name in dev and dev[name] != version}
    assert differing == {}, "the dev lock must pin production's versions (scripts/lock.sh compiles it with -c)"
