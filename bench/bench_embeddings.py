"""Embedding cost on the local model (all-MiniLM-L6-v2, CPU), printed as tables.

    .venv/bin/python bench/bench_embeddings.py [--texts 256] [--rounds 3]

Measures:
  * start-up — importing torch + sentence-transformers and reading the packaged weights (`LocalEmbedder.load`);
  * throughput — items embedded per second by batch size, over --texts memory-unit-sized texts (20-40 words),
    median of --rounds rounds;
  * one call's time — the ~10 items one conversation yields (3 memory units, 6 concepts, 1 artifact), and the four
    short names ingestion's similarity check embeds, p50 / p95 over 50 calls;
each in float32 and in bfloat16 (ORRERY_LOCAL_EMBEDDINGS_PRECISION), alternating, so both see the same machine.
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

from agents.embeddings import LocalEmbedder, local_precision
from agents.llm import CallContext
from settings import LocalPrecision

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


NAMES = ["Running (activity)", "half-marathon training (goal)", "Sister Ana (person)", "shin splints (health)"]
"""What ingestion's similarity check embeds: the new concepts' names (four, short), in one call."""
PRECISIONS: tuple[LocalPrecision, ...] = ("float32", "bfloat16")


def p50_p95(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[max(0, int(0.95 * len(ordered)) - 1)]


async def timed(embedder: LocalEmbedder, batch: list[str]) -> float:
    t0 = time.perf_counter()
    await embedder.embed(batch, context=CONTEXT)
    return time.perf_counter() - t0


async def main(count: int, rounds: int) -> None:
    loaded: dict[str, LocalEmbedder] = {}
    for precision in PRECISIONS:
        started = time.perf_counter()
        loaded[precision] = await LocalEmbedder.load(precision=precision)
        if precision == PRECISIONS[0]:
            load_s = time.perf_counter() - started
    corpus = texts(count)
    for embedder in loaded.values():
        await embedder.embed(corpus[:8], context=CONTEXT)  # first-call warm-up (allocations, thread pool)

    print(f"\nLocal model start-up (import torch + sentence-transformers, read weights): {load_s:.1f} s")
    print(f"auto chooses {local_precision('auto')} on this CPU\n")
    print(f"Throughput on {count} texts of 20-40 words, median of {rounds} rounds, the precisions alternating\n")
    print("| batch size | float32 items/s | bfloat16 items/s |")
    print("|---:|---:|---:|")
    for size in BATCH_SIZES:
        rates: dict[str, list[float]] = {precision: [] for precision in PRECISIONS}
        for _ in range(rounds):
            for precision in PRECISIONS:
                chunked = LocalEmbedder(loaded[precision]._model, batch_size=size)
                rates[precision].append(count / await timed(chunked, corpus))
        cells = " | ".join(f"{statistics.median(rates[precision]):,.0f}" for precision in PRECISIONS)
        print(f"| {size} | {cells} |")

    print("\nOne call, 50 times each, the precisions alternating: p50 / p95\n")
    print("| call | float32 | bfloat16 |")
    print("|---|---:|---:|")
    for label, batch in (
        (f"one ingestion's {len(ingestion_items())} items", ingestion_items()),
        (f"the similarity check's {len(NAMES)} names", NAMES),
    ):
        seconds: dict[str, list[float]] = {precision: [] for precision in PRECISIONS}
        for _ in range(50):
            for precision in PRECISIONS:
                seconds[precision].append(await timed(loaded[precision], batch))
        cells = " | ".join("{:.0f} / {:.0f} ms".format(*(1000 * v for v in p50_p95(seconds[p]))) for p in PRECISIONS)
        print(f"| {label} | {cells} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.texts, arguments.rounds))
