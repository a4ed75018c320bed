"""The scripted LLM answers by prompt name: the client names its prompt in a header on every request, whatever the
response format, and each prompt's samples file answers only that prompt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agents.llm import LLMClient
from agents.scripted_llm import (
    ScriptedLLMServer,
    ScriptedReply,
    extra_sample_dir,
    load_all_sample_answers,
    load_sample_answers,
    sample_answers_server,
    shipped_samples,
)
from core.errors import PermanentError
from prompts import PROMPT_HEADER, PROMPTS_DIR, RenderedPrompt
from tests.agents.conftest import ClientFactory
from tests.agents.test_llm import CONTEXT, GOOD, PROMPT, Verdict

BAD = {"mood": "bad", "score": 2, "note": "a rainy day"}


def samples_file(directory: Path, prompt: str, answers: list[dict[str, Any]]) -> Path:
    path = directory / f"{prompt}.json"
    path.write_text(json.dumps({"about": "test samples", "answers": answers}), encoding="utf-8")
    return path


def prompt_named(name: str, user: str = "How was the day?") -> RenderedPrompt:
    return RenderedPrompt(name=name, version="0123456789ab", system="You judge moods.", user=user)


async def verdict(client: LLMClient, prompt: RenderedPrompt) -> Verdict:
    return (await client.complete(prompt, Verdict, model="test-model", context=CONTEXT)).value


async def test_every_request_names_its_prompt_whatever_the_format_and_in_the_repair(
    server: ScriptedLLMServer, client: LLMClient
) -> None:
    server.supports_json_schema = False  # json_schema refused, then JSON mode: an invalid answer, then its repair
    server.enqueue(ScriptedReply.text('{"mood": '), ScriptedReply.json(GOOD))
    assert await verdict(client, PROMPT) == Verdict(**GOOD)

    requests = server.chat_requests
    formats = [r.response_format["type"] if r.response_format else None for r in requests]
    assert formats == ["json_schema", "json_object", "json_object"]
    assert [r.prompt_name for r in requests] == ["probe"] * 3
    assert all(r.headers[PROMPT_HEADER.lower()] == "probe" for r in requests)
    assert all("probe" not in r.message_text() for r in requests)  # the model never sees it


async def test_samples_answer_only_the_prompt_they_are_named_after(tmp_path: Path, make_client: ClientFactory) -> None:
    samples_file(tmp_path, "mood_good", [{"match": "the day", "answer": GOOD}])
    samples_file(tmp_path, "mood_bad", [{"match": "the day", "answer": BAD}, {"answer": GOOD}])
    with ScriptedLLMServer(keyed_answers=load_all_sample_answers([tmp_path])) as scripted:
        client = make_client(base_url=scripted.base_url)
        assert await verdict(client, prompt_named("mood_good")) == Verdict(**GOOD)
        assert await verdict(client, prompt_named("mood_bad")) == Verdict(**BAD)
        assert await verdict(client, prompt_named("mood_bad", user="Anything")) == Verdict(**GOOD)  # no match: all
        with pytest.raises(PermanentError, match="no sample answer for prompt 'mood_good' matches"):
            await verdict(client, prompt_named("mood_good", user="Anything"))
        with pytest.raises(PermanentError, match="no sample answer for prompt 'nobody' matches"):
            await verdict(client, prompt_named("nobody"))


async def test_the_demo_server_serves_shipped_added_and_given_sample_directories(
    tmp_path: Path, make_client: ClientFactory
) -> None:
    added, given = tmp_path / "added", tmp_path / "given"
    added.mkdir()
    given.mkdir()
    samples_file(added, "mood_added", [{"answer": GOOD}])
    samples_file(given, "mood_given", [{"answer": BAD}])
    with extra_sample_dir(added), sample_answers_server(given) as scripted:
        client = make_client(base_url=scripted.base_url)
        assert await verdict(client, prompt_named("mood_added")) == Verdict(**GOOD)
        assert await verdict(client, prompt_named("mood_given")) == Verdict(**BAD)
    prompts = {answer.prompt for answer in load_all_sample_answers()}
    assert "ingestion" in prompts and "mood_added" not in prompts  # the added directory is gone after the block


def test_shipped_samples_are_one_file_per_prompt_and_each_names_a_prompt() -> None:
    names = sorted(f.name.removesuffix(".json") for f in shipped_samples().iterdir() if f.name.endswith(".json"))
    assert names and all((PROMPTS_DIR / f"{name}.j2").is_file() for name in names)
    assert load_sample_answers()[0].prompt == "ingestion"


def test_a_broken_or_doubled_samples_file_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=r"samples file .*broken\.json is not JSON"):
        load_sample_answers("broken", directory=tmp_path)
    samples_file(tmp_path, "shapeless", [{"match": "x"}])
    with pytest.raises(ValueError, match=r"shapeless\.json: expected \{\"answers\""):
        load_sample_answers("shapeless", directory=tmp_path)
    with pytest.raises(FileNotFoundError, match="no sample answers for prompt 'absent'"):
        load_sample_answers("absent", directory=tmp_path)
    twin = tmp_path / "twin"
    twin.mkdir()
    samples_file(twin, "ingestion", [{"answer": GOOD}])
    with pytest.raises(ValueError, match="two samples files for prompt 'ingestion'"):
        load_all_sample_answers([twin])


def test_a_sample_names_what_was_shown_by_its_text() -> None:
    """A keyed answer's "@shown:TEXT" is the handle the request listed TEXT under, or null when it was not listed."""
    from agents.scripted_handles import resolve_shown

    request = "<earlier_memories>\np1. [2026-04-01] Ran 10k: by the river\np2. [2026-04-11] Dad's knee: surgery\n"
    request += "</earlier_memories>\n<existing_concepts>\n1. Running (activity)\n12. Lena (person)\n"
    answer = {"units": [{"retells": "@shown:Dad's knee", "updates": "@shown:Tokyo trip"}], "handle": "@shown:Lena"}
    assert resolve_shown(answer, request) == {"units": [{"retells": "p2", "updates": None}], "handle": 12}
