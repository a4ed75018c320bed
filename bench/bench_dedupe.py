"""Concept deduplication quality with the local model: precision and recall of merges on labelled mentions.

    .venv/bin/python bench/bench_dedupe.py

bench/data/concept_mentions.json holds pairs written for this project (an existing concept, a later mention, and
whether they are the same): variants ("my sister Emma" / "Emma" / "emma"), near-synonyms, nicknames, and distinct
look-alikes that must stay apart ("Emma's husband Tom", "Portuguese" next to "Spanish"). A pair merges when the
normalized name and type match (the write's rule) or when agents/ingestion/similar.py's rule holds at a threshold
on the similarity of the names ("name (type)"); the table shows precision and recall of merges by threshold (goal:
both >= 0.9), and the same with descriptions embedded too, which is why the rule compares names.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.embeddings import _load_local_model, local_precision
from agents.ingestion.similar import Candidate, same_concept
from core.embedding_texts import concept_text
from core.vocabulary import normalize_concept_name, normalize_concept_type
from settings import load_settings

DATA = Path(__file__).parent / "data" / "concept_mentions.json"
THRESHOLDS = (0.70, 0.75, 0.78, 0.80, 0.82, 0.85, 0.90)


def scores(model: Any, cases: list[dict[str, Any]], *, descriptions: bool) -> list[float]:
    def text(name: str, kind: str, description: str | None) -> str:
        return concept_text(name, kind, description if descriptions else None)

    existing = model.encode([text(*c["existing"]) for c in cases], normalize_embeddings=True, batch_size=64)
    mentions = model.encode([text(*c["mention"]) for c in cases], normalize_embeddings=True, batch_size=64)
    return [float(np.dot(a, b)) for a, b in zip(existing, mentions, strict=True)]


def table(cases: list[dict[str, Any]], similarity: list[float], default: float) -> None:
    same = sum(c["same"] for c in cases)
    print("| threshold | merged | precision | recall | wrong merges | missed |")
    print("|---:|---:|---:|---:|---|---|")
    for threshold in sorted({*THRESHOLDS, default}):
        merged, wrong, missed = 0, [], []
        for case, score in zip(cases, similarity, strict=True):
            (name, kind, _), (new_name, new_kind, _) = case["existing"], case["mention"]
            by_name = normalize_concept_name(name) == normalize_concept_name(new_name)
            by_name = by_name and normalize_concept_type(kind) == normalize_concept_type(new_kind)
            decision = by_name or same_concept(new_kind, Candidate("x", name, kind, score), threshold)
            merged += decision
            if decision and not case["same"]:
                wrong.append(f"{new_name}→{name} ({score:.2f})")
            if not decision and case["same"]:
                missed.append(f"{new_name}→{name} ({score:.2f})")
        precision = (merged - len(wrong)) / merged if merged else 1.0
        recall = (merged - len(wrong)) / same
        mark = " (default)" if threshold == default else ""
        print(
            f"| {threshold:.2f}{mark} | {merged} | {precision:.2f} | {recall:.2f} | {'; '.join(wrong) or '-'} "
            f"| {'; '.join(missed) or '-'} |"
        )


def main() -> None:
    cases = json.loads(DATA.read_text())["cases"]
    model = _load_local_model(local_precision("auto"))  # what a worker loads
    default = load_settings().concept_similarity_threshold
    started = time.perf_counter()
    by_name = scores(model, cases, descriptions=False)
    elapsed = time.perf_counter() - started
    print(f"{len(cases)} labelled pairs ({sum(c['same'] for c in cases)} the same concept), {elapsed:.2f} s\n")
    print('Shipped rule: same type and names similar ("name (type)" embedded), or the same normalized name:\n')
    table(cases, by_name, default)
    print("\nFor comparison, descriptions embedded too (what the vector store holds; used to find candidates):\n")
    table(cases, scores(model, cases, descriptions=True), default)


if __name__ == "__main__":
    main()
