"""Prompt templates as files, each with a version derived from its content.

Why files with content hashes: a prompt change is a behaviour change, so every LLM call records the name and version
of the prompt it used (runtime.llm_calls) and a regression can be traced to the exact wording that caused it.

A prompt file is a Jinja2 template. It may define `{% block system %}` and `{% block user %}`; a file without blocks
is one user message. Every `{{ value }}` a template interpolates is passed through `neutralize_delimiters`, so data
(conversation text, profiles, validation errors) can never close or open the XML-like delimiters the prompts use
to fence data off from instructions; only the template's literal text can.

A prompt is found by name: prompts/{name}.j2, where every shipped agent keeps its own. A test's throwaway agent keeps
its template beside it and adds that directory for a while (`extra_prompt_dir`), so no agent edits this module.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

PROMPTS_DIR = Path(__file__).parent
_NAME = re.compile(r"^[a-z][a-z0-9_.]*$")
_TAG_OPENING = re.compile(r"<(?=\s*/?\s*[A-Za-z_!?])")
SAFE_LT = "\u2039"  # SINGLE LEFT-POINTING ANGLE QUOTATION MARK: reads like "<", but no model or parser sees a tag
PROMPT_HEADER = "X-Orrery-Prompt"
"""The HTTP header naming the prompt a chat request was rendered from: the scripted LLM picks its sample answers by
it, and a proxy's request log can show it. A header, not message text, so the model and its prompt cache never see
it, and it travels whatever response format the server supports."""
_extra_dirs: list[Path] = []


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


@cache
def _environment(directories: tuple[Path, ...]) -> jinja2.Environment:
    """The one template environment per search path (normally just prompts/)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(directories),
        undefined=jinja2.StrictUndefined,  # a missing variable is a bug, not an empty string in a prompt
        autoescape=False,  # prompts are not HTML; delimiter safety comes from `finalize` instead
        finalize=neutralize_delimiters,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@dataclass(frozen=True)
class RenderedPrompt:
    """A prompt filled in: the system and user message texts, plus the identity of the template.

    `images` (data URLs, `with_images`) travel after the user text as image content parts, for a vision model."""

    name: str
    version: str
    system: str | None
    user: str
    images: tuple[str, ...] = ()

    def with_images(self, *data_urls: str) -> RenderedPrompt:
        """This prompt with images after its user text (data: URLs, e.g. `data:image/png;base64,…`)."""
        return replace(self, images=(*self.images, *data_urls))

    def messages(self) -> list[dict[str, Any]]:
        """The chat messages in OpenAI's wire format: text content, or text and image parts when there are images."""
        out: list[dict[str, Any]] = [{"role": "system", "content": self.system}] if self.system else []
        if not self.images:
            out.append({"role": "user", "content": self.user})
            return out
        parts: list[dict[str, Any]] = [{"type": "text", "text": self.user}]
        parts += [{"type": "image_url", "image_url": {"url": url}} for url in self.images]
        out.append({"role": "user", "content": parts})
        return out

    def headers(self) -> dict[str, str]:
        """The HTTP headers that name this prompt on a chat request (PROMPT_HEADER)."""
        return {PROMPT_HEADER: self.name}


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


def prompt_dirs() -> tuple[Path, ...]:
    """Where prompts are looked up: prompts/, then the directories added with `extra_prompt_dir`."""
    return (PROMPTS_DIR, *_extra_dirs)


@contextmanager
def extra_prompt_dir(directory: Path) -> Iterator[Path]:
    """Look for prompts in `directory` too while the block runs: a test's own agent keeps its template beside it.

    A name found in two directories is refused when loaded, so an added directory can never shadow a shipped prompt.
    """
    if not directory.is_dir():
        raise PromptNotFound(f"no prompt directory {directory}")
    _extra_dirs.append(directory)
    try:
        yield directory
    finally:
        _extra_dirs.remove(directory)


def load_prompt(name: str) -> Prompt:
    """The template {name}.j2 from prompts/ (or an added directory), loaded once per process."""
    if not _NAME.match(name):
        raise PromptNotFound(f"invalid prompt name {name!r}: use lowercase letters, digits, '_' and '.'")
    return _load(name, prompt_dirs())


@cache
def _load(name: str, directories: tuple[Path, ...]) -> Prompt:
    paths = [directory / f"{name}.j2" for directory in directories if (directory / f"{name}.j2").is_file()]
    if not paths:
        raise PromptNotFound(f"no prompt {name!r}: expected the file {PROMPTS_DIR / f'{name}.j2'}")
    if len(paths) > 1:
        raise PromptNotFound(f"prompt {name!r} is in {' and '.join(map(str, paths))}; rename one of them")
    source = paths[0].read_text(encoding="utf-8")
    template = _environment(directories).get_template(paths[0].name)
    return Prompt(name=name, source=source, version=prompt_version(source), _template=template)
