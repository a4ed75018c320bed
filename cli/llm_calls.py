"""A job's LLM calls as `run.py jobs show` presents them: tokens per call (prompt, of which cached, completion) and
the estimated cost at list price, cached prompt tokens at the provider's cached rate (jobs/runtime/metrics.py)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from cli.runs import iso
from cli.tables import Col, show
from jobs.runtime.metrics import list_price_usd
from store.llm_calls import StoredLLMCall


def call_cost_usd(stored: StoredLLMCall) -> float | None:
    """The call's cost at list price; None for a model without a price."""
    call = stored.call
    return list_price_usd(call.model, call.prompt_tokens, call.completion_tokens, call.cached_tokens)


def llm_call_json(stored: StoredLLMCall) -> dict[str, Any]:
    call = stored.call
    return {
        "id": stored.id,
        "created_at": iso(stored.created_at),
        "agent": call.agent,
        "model": call.model,
        "prompt": f"{call.prompt_name}@{call.prompt_version}",
        "purpose": call.purpose.value,
        "attempt": call.attempt,
        "outcome": call.outcome.value,
        "prompt_tokens": call.prompt_tokens,
        "cached_tokens": call.cached_tokens,
        "completion_tokens": call.completion_tokens,
        "latency_ms": call.latency_ms,
        "estimated_cost_usd": call_cost_usd(stored),
    }


def show_llm_calls(console: Console, calls: list[StoredLLMCall]) -> None:
    """One row per call (every run's), then the totals; a model without a list price shows its cost as "-"."""
    if not calls:
        console.print("LLM calls: none recorded for this job id")
        return
    columns = [
        Col("at"),
        Col("agent", key=True),
        Col("model", key=True),
        Col("call"),
        Col("outcome"),
        Col("prompt", justify="right"),
        Col("cached", justify="right"),
        Col("completion", justify="right"),
        Col("est. $", justify="right"),
    ]
    costs = [call_cost_usd(stored) for stored in calls]
    rows = [
        (
            iso(stored.created_at),
            stored.call.agent,
            stored.call.model,
            f"{stored.call.purpose.value} {stored.call.attempt}",
            stored.call.outcome.value,
            str(stored.call.prompt_tokens),
            str(stored.call.cached_tokens),
            str(stored.call.completion_tokens),
            "-" if cost is None else f"{cost:.6f}",
        )
        for stored, cost in zip(calls, costs, strict=True)
    ]
    show(console, columns, rows)
    prompt = sum(stored.call.prompt_tokens for stored in calls)
    cached = sum(stored.call.cached_tokens for stored in calls)
    completion = sum(stored.call.completion_tokens for stored in calls)
    priced = [cost for cost in costs if cost is not None]
    total = f"${sum(priced):.6f} at list price" if priced else "no list price for its models"
    unpriced = len(costs) - len(priced)
    count = f"{len(calls)} call" + ("" if len(calls) == 1 else "s")
    left_out = f" ({unpriced} calls of models without a price not counted)" if unpriced and priced else ""
    console.print(
        f"LLM: {count}, {prompt} prompt tokens ({cached} cached) + {completion} completion tokens, {total}{left_out}",
        highlight=False,
        soft_wrap=True,
    )
