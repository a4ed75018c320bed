"""Prompt templates as files, each with a version derived from its content.

Why files with content hashes: a prompt change is a behaviour change, so every LLM call records the name and version
of the prompt it used (runtime.llm_calls) and a regression can be traced to the exact wording that caused it.

A prompt file is a Jinja2 template. It may define `{% block system %}` and `{% block user %}`; a file without blocks
is one user message. Every `{{ value }}` a template interpolates is passed through `neutralize_delimiters`, so data
(conversation text, profiles, validation errors) can never close or open the XML-like delimiters the prompts use
to fence data off from instructions; only the template's literal text can.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

PROMPTS_DIR = Path(__file__).parent
_NAME = re.compile(r"^[a-z][a-z0-9_.]*$")
_TAG_OPENING = re.compile(r"<(?=\s*/?\s*[A-Za-z_!?])")
SAFE_LT = "\u2039"  # SINGLE LEFT-POINTING ANGLE QUOTATION MARK: reads like "<", but no model or parser sees a tag


class PromptNotFound(LookupError):
    """No template of that name in prompts/ (a programming error, not bad input)."""


def neutralize_delimiters(value: object) -> object:
    """Make interpolated text unable to open or close a tag: `<tag`, `</tag`, `< /tag` lose their `<`.

    Only a "<" that starts something tag-like (a letter, "/", "!" or "?", spaces allowed) is replaced by SAFE_LT, so
    "I <3 running" or "5 < 7" stay as written.
    """
    if isinstance(value, str):
        return _TAG_OPENING.sub(SAFE_LT, value)
    if value is None:
        return ""
    return _TAG_OPENING.sub(SAFE_LT, str(value))


_environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(PROMPTS_DIR),
    undefined=jinja2.StrictUndefined,  # a missing variable is a bug, not an empty string in a prompt
    autoescape=False,  # prompts are not HTML; delimiter safety comes from `finalize` instead
    finalize=neutralize_delimiters,
    keep_trailing_newline=False,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class RenderedPrompt:
    """A prompt filled in: the system and user message texts, plus the identity of the template."""

    name: str
    version: str
    system: str | None
    user: str

    def messages(self) -> list[dict[str, str]]:
        """The chat messages in OpenAI's wire format."""
        out = [{"role": "system", "content": self.system}] if self.system else []
        out.append({"role": "user", "content": self.user})
        return out


@dataclass(frozen=True)
class Prompt:
    """One template file; `version` is the first 12 hex digits of the sha256 of its bytes."""

    name: str
    source: str
    version: str
    _template: jinja2.Template

    def render(self, **variables: Any) -> RenderedPrompt:
        """Fill in the template; a variable the template uses but the caller omitted raises UndefinedError."""
        blocks = self._template.blocks
        if "user" not in blocks:
            return RenderedPrompt(self.name, self.version, None, self._template.render(**variables).strip())
        context = self._template.new_context(variables)
        system = "".join(blocks["system"](context)).strip() if "system" in blocks else None
        user = "".join(blocks["user"](context)).strip()
        return RenderedPrompt(self.name, self.version, system, user)


def prompt_version(source: str) -> str:
    """The content hash used as a prompt's version (line endings normalized, so a checkout on Windows agrees)."""
    return hashlib.sha256(source.replace("\r\n", "\n").encode("utf-8")).hexdigest()[:12]


@cache
def load_prompt(name: str) -> Prompt:
    """The template prompts/{name}.j2, loaded once per process."""
    if not _NAME.match(name):
        raise PromptNotFound(f"invalid prompt name {name!r}: use lowercase letters, digits, '_' and '.'")
    path = PROMPTS_DIR / f"{name}.j2"
    if not path.is_file():
        raise PromptNotFound(f"no prompt {name!r}: expected the file {path}")
    source = path.read_text(encoding="utf-8")
    template = _environment.get_template(path.name)
    return Prompt(name=name, source=source, version=prompt_version(source), _template=template)
