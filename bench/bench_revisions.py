"""Are earlier memories shown to ingestion's model when a conversation retells or changes them, and what do they cost?

    .venv/bin/python bench/bench_revisions.py

bench/data/revision_pairs.json holds one user's memory (16 background units and the 40 cases' earlier units, 56 in
all) and 40 later conversations written for this project: 14 retellings, 12 changed facts, 6 contradictions and 8
look-alikes that must stay apart. For each, the conversation is embedded with the local model as ingestion embeds
it, the user's units are ranked by cosine similarity as the vector store ranks them (jobs/ingestion_recall.py:
EARLIER_CANDIDATES, EARLIER_FLOOR) and agents/ingestion/agent.shown_earlier keeps what the token budget holds. The
table says how often the earlier unit is among the candidates shown (goal: >= 95% of retellings, changes and
contradictions), at which rank, and what the shown candidates add to the prompt (goal: <= 25%).

What it does not measure: whether a model then says "retells" or "updates" correctly. With the scripted LLM that
would measure the script, not a model, so that part needs a real model and is not here.
"""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.embeddings import _load_local_model, local_precision
from agents.ingestion import EarlierMemory, IngestionLimits
from agents.ingestion.agent import EARLIER_MEMORY_TOKENS, shown_earlier
from agents.llm import estimate_tokens
from core.embedding_texts import memory_unit_text
from core.language import ENGLISH
from jobs.ingestion_recall import EARLIER_CANDIDATES, EARLIER_FLOOR
from prompts import load_prompt

DATA = Path(__file__).parent / "data" / "revision_pairs.json"
START = "2026-06-01T09:00:00Z"
BUDGETS = (150, EARLIER_MEMORY_TOKENS, 600)


def prompt_tokens(later: str, concepts: list[dict[str, Any]], earlier: list[dict[str, str]]) -> int:
    rendered = load_prompt("ingestion").render(
        conversation={
            "title": None,
            "start_time": START,
            "messages": [
                {"n": 1, "role": "user", "at": START, "content": later},
                {"n": 2, "role": "assistant", "at": START, "content": "Thank you for telling me. How do you feel?"},
            ],
        },
        window={"index": 1, "count": 1},
        limits=asdict(IngestionLimits()),
        earlier_summary=None,
        turn_context=None,
        memory_profile=None,
        existing_concepts=concepts,
        earlier_memories=earlier,
        language=ENGLISH.instruction,
        attachments=[],
    )
    return estimate_tokens((rendered.system or "") + rendered.user)


def main() -> None:
    data = json.loads(DATA.read_text(encoding="utf-8"))
    cases = data["cases"]
    units = [*data["background"], *(case["earlier"] for case in cases)]
    memories = [
        EarlierMemory(memory_unit_id=str(n), title=title, content=content, creation_ts=START)
        for n, (title, content) in enumerate(units)
    ]
    concepts = [
        {"handle": n, "name": title, "type": "topic", "description": None}
        for n, (title, _) in enumerate(data["background"], start=1)
    ]
    model = _load_local_model(local_precision("auto"))  # what a worker loads
    unit_vectors = model.encode([memory_unit_text(t, c) for t, c in units], normalize_embeddings=True, batch_size=64)
    query_vectors = model.encode([case["later"] for case in cases], normalize_embeddings=True, batch_size=64)

    print(f"{len(cases)} conversations, {len(units)} earlier memory units of one user, local model")
    print(f"candidates: the {EARLIER_CANDIDATES} nearest with similarity >= {EARLIER_FLOOR}, then the token budget\n")
    columns = ("budget (tokens)", "kind", "cases", "earlier unit shown", "median rank", "shown per call")
    print("| " + " | ".join(columns) + " | prompt added (mean / max) |")
    print("|---:|---|---:|---:|---:|---:|---|")
    for budget in BUDGETS:
        by_kind: dict[str, list[tuple[bool, int | None, int, float]]] = {}
        for n, case in enumerate(cases):
            target = str(len(data["background"]) + n)
            scores = unit_vectors @ query_vectors[n]
            order = [int(i) for i in np.argsort(-scores) if scores[i] >= EARLIER_FLOOR][:EARLIER_CANDIDATES]
            shown = shown_earlier([memories[i] for i in order], budget)
            ids = [memory.memory_unit_id for memory, _ in shown]
            rank = ids.index(target) + 1 if target in ids else None
            without = prompt_tokens(case["later"], concepts, [])
            added = prompt_tokens(case["later"], concepts, [line for _, line in shown]) - without
            by_kind.setdefault(case["kind"], []).append((rank is not None, rank, len(ids), added / without))
        for kind in ("retell", "update", "contradiction", "lookalike"):
            rows = by_kind[kind]
            found = sum(hit for hit, *_ in rows)
            ranks = [rank for _, rank, *_ in rows if rank is not None]
            median = f"{statistics.median(ranks):g}" if ranks else "-"
            shown_mean = statistics.mean(count for *_, count, _ in rows)
            shares = [share for *_, share in rows]
            print(
                f"| {budget} | {kind} | {len(rows)} | {found}/{len(rows)} ({found / len(rows):.0%}) | {median} "
                f"| {shown_mean:.1f} | {statistics.mean(shares):.0%} / {max(shares):.0%} |"
            )
    print("\nlookalike: the similar earlier unit shown is expected; keeping them apart is the model's decision.")


if __name__ == "__main__":
    main()
