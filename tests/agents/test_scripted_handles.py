"""Sample answers cite items by name; the scripted server answers with the handles the request listed."""

from __future__ import annotations

import openai

from agents.scripted_handles import handle_for, resolve_references
from agents.scripted_llm import KeyedAnswer, ScriptedLLMServer

INSIGHT_LISTING = """<memory_units>
m1. [2026-12-03, importance 8.0] Plan to test freelancing: she will take one project.
m2. [2026-12-01, importance 8.0] Ran 10k without stopping: at an easy pace.
</memory_units>
<concepts>
c1. Running shoes (object): new ones.
c2. Running (activity): Maya's running training. [3 mention(s) this cycle, 5 neighbour(s)]
c3. Morning runs (activity): calmer days.
</concepts>
<communities>
k1. 4 concepts: Freelance design, Autonomy, Priya
k2. 3 concepts: Running, Coach Dani, Patience
</communities>
p1. Ran 10k without stopping (importance 8): a prompts listing
"""


def test_each_kind_of_line_resolves_by_its_title_name_or_member() -> None:
    assert handle_for("m", "Ran 10k without stopping", INSIGHT_LISTING) == "m2"
    assert handle_for("c", "Running", INSIGHT_LISTING) == "c2"  # not "Running shoes", whose name only starts so
    assert handle_for("k", "Coach Dani", INSIGHT_LISTING) == "k2"
    assert handle_for("k", "Freelance design", INSIGHT_LISTING) == "k1"
    assert handle_for("p", "Ran 10k without stopping", INSIGHT_LISTING) == "p1"
    assert handle_for("c", "Dona Graça", INSIGHT_LISTING) is None


def test_unresolved_references_leave_lists_and_stay_visible_elsewhere() -> None:
    answer = {
        "sources": ["@m:Ran 10k without stopping", "@c:Dona Graça", "m1"],
        "merge": {"primary": "@c:Running", "duplicates": ["@c:Morning runs"]},
        "about": "@c:Nobody listed",
        "text": "an @ sign in prose stays",
    }
    assert resolve_references(answer, INSIGHT_LISTING) == {
        "sources": ["m2", "m1"],
        "merge": {"primary": "c2", "duplicates": ["c3"]},
        "about": "@c:Nobody listed",
        "text": "an @ sign in prose stays",
    }


def test_the_server_answers_a_keyed_sample_with_the_requests_handles() -> None:
    keyed = KeyedAnswer("<concepts>", {"primary": "@c:Running", "sources": ["@m:Plan to test freelancing"]})
    with ScriptedLLMServer(keyed_answers=[keyed]) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test")
        reply = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": INSIGHT_LISTING}], response_format={"type": "json_object"}
        )
    assert reply.choices[0].message.content is not None
    assert '"primary": "c2"' in reply.choices[0].message.content
    assert '"sources": ["m1"]' in reply.choices[0].message.content
