"""The README is the operator's manual: every setting must be documented there."""

from __future__ import annotations

from pathlib import Path

from settings import Settings, _env_name

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_readme() -> None:
    missing = [_env_name(field) for field in Settings.model_fields if f"`{_env_name(field)}`" not in README]
    assert missing == [], f"document these settings in README.md: {missing}"
