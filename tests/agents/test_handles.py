"""agents/handles.py, the one reader of handles: a table of hostile spellings, and random text from an alphabet of
look-alikes (other digits, whitespace, signs, NUL, surrogates) to show it never raises and a handle has one spelling."""

from __future__ import annotations

import random

import pytest

from agents.handles import MAX_DIGITS, Handle, Listing, parse_handle
from agents.ingestion import IngestionOutput
from agents.ingestion.schema import check_references
from tests.agents.test_ingestion import answer, growth, rel


@pytest.mark.parametrize(
    "text",
    [
        "m²",  # isdigit() says yes, int() raises
        "m\u0661",  # an Arabic-Indic one: isdigit() and int() both accept it
        "m1\n",  # a `$` regex accepts it
        "m1 ",
        " m1",
        "m01",
        "m0",
        "m-1",
        "m+1",
        "m1_0",
        "M1",
        "m",
        "",
        "mm1",
        "m1\x00",
        "m\ud8001",
        "m" + "1" * 5000,  # over int()'s 4300 digits
        "m" + "9" * MAX_DIGITS + "9",
    ],
)
def test_hostile_spellings_are_not_handles(text: str) -> None:
    assert parse_handle(text, "mck") is None
    problem = Listing({"m": 3}).problem("sources[0]", text, "mc")
    assert problem is not None and "is not a handle of the kind expected here (m/c)" in problem
    assert len(problem) < 200  # a runaway "handle" is quoted cut


def test_a_handle_is_read_and_resolved_against_what_was_shown() -> None:
    assert parse_handle("c12", "mc") == Handle("c", 12) and Handle("c", 12).index == 11
    assert parse_handle("c12", "m") is None  # a handle of another kind
    assert parse_handle("m" + "9" * MAX_DIGITS, "m") == Handle("m", int("9" * MAX_DIGITS))
    shown = Listing({"m": 2, "t": 0})
    assert shown.resolve("m2", "mt") == Handle("m", 2) and shown.resolve("m3", "mt") is None
    assert shown.problem("x", "m3", "mt") == "x: 'm3' was not shown to you (you were shown m1..m2)"
    assert shown.problem("x", "t1", "mt") == "x: 't1' was not shown to you (you were shown none)"
    assert shown.problem("x", "m1", "mt") is None


ALPHABET = "mcke0123456789²\u0661\u0663\uff11 \n\t-+_.\x00\ud800eM"


def test_random_text_never_raises_and_a_handle_has_one_spelling() -> None:
    """A property test without a library: 20,000 random strings, seeded so a failure reproduces."""
    rng = random.Random(18)
    shown = Listing({"m": 5, "c": 5, "k": 5})
    for _ in range(20_000):
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 9)))
        handle = parse_handle(text, "mck")
        assert handle is None or str(handle) == text, text
        shown.problem("where", text, "mck")
        shown.resolve(text, "mck")


def test_the_schema_pattern_and_the_reader_agree() -> None:
    """pydantic's pattern (its Rust regex) refuses what the reader refuses, so an answer's handles are read once."""
    rng = random.Random(9)
    for _ in range(5_000):
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 9)))
        accepted = True
        try:
            IngestionOutput.model_validate(answer(growth_events=[growth(text)]))
        except ValueError:
            accepted = False
        assert accepted == (parse_handle(text, "mce") is not None), text


def test_ingestion_reference_checks_never_raise_without_the_schema_pattern() -> None:
    """Even on an answer pydantic's pattern did not see (changed with model_copy), the check returns problems."""
    output = IngestionOutput.model_validate(answer(relationships=[rel("m1", "e1")]))
    bad = output.relationships[0].model_copy(update={"target": "e" + "1" * 5000})
    problems = check_references(output.model_copy(update={"relationships": [bad]}), handle_count=2)
    assert any("is not a key of your answer or an existing concept's handle" in p for p in problems), problems
