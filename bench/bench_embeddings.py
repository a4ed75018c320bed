"""Embedding cost on the local model (all-MiniLM-L6-v2, CPU), printed as tables.

    .venv/bin/python bench/bench_embeddings.py [--texts 256] [--rounds 3]

Measures:
  * start-up — importing torch + sentence-transformers and reading the packaged weights (`LocalEmbedder.load`);
  * throughput — items embedded per second by batch size, over --texts memory-unit-sized texts (20-40 words),
    median of --rounds rounds;
  * what it adds to an ingestion — one `embed` call of the ~10 items one conversation yields (3 memory units,
    6 concepts, 1 artifact), p50 / p95 over 50 calls.
Runs on whatever cores torch sees (2 on the reference VM); nothing else should run meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.embeddings import LocalEmbedder
from agents.llm import CallContext

CONTEXT = CallContext(user_id="bench", agent="bench_embeddings")
BATCH_SIZES = (1, 8, 16, 32, 64, 128)

_SUBJECTS = ["my sister Emma", "the new job", "my morning run", "Dad", "the move to Lisbon", "our book club"]
_VERBS = ["made me think about", "kept coming back to", "reminded me of", "changed how I see", "got me worried about"]
_OBJECTS = ["what I want from this year", "how tired I have been", "the promise I made in spring", "money", "home"]
_TAILS = [
    "and I wrote it down so I would not forget it.",
    "We talked for an hour and I felt lighter afterwards, which surprised me.",
    "It is small, but it matters to me more than I expected when it started.",
    "Next week I want to try again and see whether it feels different.",
]


def texts(count: int, seed: int = 11) -> list[str]:
    """Memory-unit-like sentences of 20-40 words, all different."""
    rng = random.Random(seed)
    return [
        f"{rng.choice(_SUBJECTS).capitalize()} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} (day {n}), "
        f"{rng.choice(_TAILS)} {rng.choice(_TAILS)}"
        for n in range(count)
    ]


def ingestion_items() -> list[str]:
    units = texts(3, seed=5)
    concepts = [
        f"{name} ({kind})\n{name} as the user talks about them"
        for name, kind in [
            ("Emma", "person"),
            ("Lisbon", "place"),
            ("running", "activity"),
            ("new job", "event"),
            ("calm", "emotion"),
            ("book club", "group"),
        ]
    ]
    return [*units, *concepts, "Insight: movement and mood\nMornings with a run read calmer."]


async def main(count: int, rounds: int) -> None:
    started = time.perf_counter()
    base = await LocalEmbedder.load()
    load_s = time.perf_counter() - started
    corpus = texts(count)
    await base.embed(corpus[:8], context=CONTEXT)  # first-call warm-up (allocations, thread pool)

    print(f"\nLocal model start-up (import torch + sentence-transformers, read weights): {load_s:.1f} s\n")
    print(f"Throughput on {count} texts of 20-40 words, median of {rounds} rounds\n")
    print("| batch size | items/s | ms per item |")
    print("|---:|---:|---:|")
    model = base._model
    for size in BATCH_SIZES:
        embedder = LocalEmbedder(model, batch_size=size)
        rates = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            await embedder.embed(corpus, context=CONTEXT)
            rates.append(count / (time.perf_counter() - t0))
        rate = statistics.median(rates)
        print(f"| {size} | {rate:,.0f} | {1000 / rate:.1f} |")

    items = ingestion_items()
    latencies = []
    for _ in range(50):
        t0 = time.perf_counter()
        await base.embed(items, context=CONTEXT)
        latencies.append((time.perf_counter() - t0) * 1000)
    latencies.sort()
    p50, p95 = statistics.median(latencies), latencies[int(0.95 * len(latencies)) - 1]
    print(f"\nOne ingestion's {len(items)} items in one call (50 calls)\n")
    print("| items | p50 ms | p95 ms |")
    print("|---:|---:|---:|")
    print(f"| {len(items)} | {p50:.0f} | {p95:.0f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.texts, arguments.rounds))
