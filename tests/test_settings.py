"""Configuration errors name the variable the operator set (issue 21): DATABASE_URL and ORRERY_DATABASE_URL are both
read, and a bad value under either used to be blamed on the other."""

from __future__ import annotations

import pytest

from settings import SettingsError, load_settings

PAIRS = [
    ("DATABASE_URL", "must start with postgresql://"),
    ("REDIS_URL", "must start with redis://"),
    ("OPENAI_BASE_URL", "must start with http://"),
    ("NEO4J_URI", "must start with neo4j://"),
    ("WEAVIATE_URL", "must start with http://"),
]


@pytest.mark.parametrize(("plain", "problem"), PAIRS)
@pytest.mark.parametrize("prefixed", [False, True])
def test_a_bad_url_is_blamed_on_the_variable_that_was_set(
    monkeypatch: pytest.MonkeyPatch, plain: str, problem: str, prefixed: bool
) -> None:
    for name in {plain, f"ORRERY_{plain}"}:
        monkeypatch.delenv(name, raising=False)
    variable = f"ORRERY_{plain}" if prefixed else plain
    monkeypatch.setenv(variable, "notaurl")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"invalid configuration: {variable}: Value error, {problem}"), message
    if not prefixed:
        assert f"ORRERY_{plain}" not in message


def test_an_orrery_setting_keeps_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORRERY_POLL_DELAY_S", "-1")
    with pytest.raises(SettingsError, match=r"ORRERY_POLL_DELAY_S: Input should be greater than 0 \(got '-1'\)"):
        load_settings()


def test_the_scripted_llm_only_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 21: with no OPENAI_* set the scripted sample answers used to be the LLM of every worker, silently."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ORRERY_LLM"):
        monkeypatch.delenv(name, raising=False)
    nothing = load_settings()
    assert not nothing.llm_is_scripted and not nothing.llm_configured
    assert nothing.llm_problem() is not None and "ORRERY_LLM=scripted" in nothing.llm_problem()  # type: ignore[operator]

    monkeypatch.setenv("OPENAI_API_KEY", " ")  # an empty line in .env is no key
    assert load_settings().openai_api_key is None and not load_settings().llm_configured

    monkeypatch.setenv("ORRERY_LLM", "Scripted")
    assert load_settings().llm_is_scripted and load_settings().llm_problem() is None
    monkeypatch.setenv("ORRERY_LLM", "openai")
    with pytest.raises(SettingsError, match="ORRERY_LLM: Input should be 'scripted'"):
        load_settings()

    monkeypatch.setenv("ORRERY_LLM", "scripted")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:11434/v1")
    with pytest.raises(SettingsError, match=r"^invalid configuration: ORRERY_LLM=scripted and OPENAI_API_KEY"):
        load_settings()
    monkeypatch.delenv("ORRERY_LLM")
    endpoint = load_settings()
    assert endpoint.llm_configured and not endpoint.llm_is_scripted


def test_recall_weights_all_zero_are_refused_with_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SIMILARITY", "RECENCY", "IMPORTANCE"):
        monkeypatch.setenv(f"ORRERY_RECALL_WEIGHT_{name}", "0")
    with pytest.raises(SettingsError, match="all 0: recall would rank nothing"):
        load_settings()
    monkeypatch.setenv("ORRERY_RECALL_WEIGHT_RECENCY", "1")
    assert load_settings().recall_weights.recency == 1.0
