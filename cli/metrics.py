"""`metrics`: a running worker's Prometheus numbers, once, for a person.

It scrapes the worker's own endpoint (ORRERY_METRICS_PORT on this host, or --url) rather than reading the ledger:
the counters (outcomes, takeovers, LLM tokens and cost) exist only in the worker processes since they started, and
the scrape shows exactly what Prometheus sees, the backlog gauges it reads from Redis and Postgres included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import httpx
import typer
from prometheus_client.parser import text_string_to_metric_families

from cli.common import console, fail, print_json, settings
from cli.tables import Col, show

PREFIX = "orrery_"


@dataclass
class Series:
    """One labelled series of a family: a value, or a histogram's count, sum and cumulative buckets."""

    labels: dict[str, str]
    value: float | None = None
    count: float = 0.0
    total: float = 0.0
    buckets: list[tuple[float, float]] = field(default_factory=list)

    def quantile(self, q: float) -> float | None:
        """Estimated like Prometheus' histogram_quantile: linear within the bucket holding the q-th observation."""
        if not self.count:
            return None
        rank, lower, below = q * self.count, 0.0, 0.0
        for bound, cumulative in sorted(self.buckets):
            if cumulative >= rank:
                if math.isinf(bound):
                    return lower  # beyond the last finite bucket: its bound is all we know
                inside = cumulative - below
                return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
            lower, below = bound, cumulative
        return None

    def as_json(self, histogram: bool) -> dict[str, Any]:
        if not histogram:
            return {"labels": self.labels, "value": self.value}
        return {
            "labels": self.labels,
            "count": self.count,
            "sum": round(self.total, 6),
            "p50": _rounded(self.quantile(0.5)),
            "p95": _rounded(self.quantile(0.95)),
        }


@dataclass
class Family:
    name: str
    kind: str
    series: dict[tuple[tuple[str, str], ...], Series] = field(default_factory=dict)


def _rounded(value: float | None) -> float | None:
    return round(value, 6) if value is not None else None


def parse(text: str) -> list[Family]:
    """Orrery's families in an exposition, histograms folded into one series per label set."""
    families = []
    for parsed in text_string_to_metric_families(text):
        if not parsed.name.startswith(PREFIX):
            continue
        family = Family(f"{parsed.name}_total" if parsed.type == "counter" else parsed.name, parsed.type)
        for sample in parsed.samples:
            labels = {k: v for k, v in sample.labels.items() if k != "le"}
            key = tuple(sorted(labels.items()))
            series = family.series.setdefault(key, Series(labels))
            if parsed.type != "histogram":
                series.value = sample.value
            elif sample.name.endswith("_bucket"):
                series.buckets.append((float(sample.labels["le"]), sample.value))
            elif sample.name.endswith("_count"):
                series.count = sample.value
            elif sample.name.endswith("_sum"):
                series.total = sample.value
        families.append(family)
    return sorted(families, key=lambda f: f.name)


def _labels(labels: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"


def metrics_command(
    url: str | None = typer.Option(
        None, "--url", help="The endpoint to read (default: http://127.0.0.1:$ORRERY_METRICS_PORT/metrics)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Print a running worker's metrics once: jobs by outcome, run times, queues, LLM calls and cost, the outbox.

    Scrapes the worker's Prometheus endpoint (counters live in the worker processes since they started); with
    `--processes N` the parent serves the sum over its processes.

    Examples:

    \b
      ORRERY_METRICS_PORT=9464 run.py metrics
      run.py metrics --url http://worker-1:9464/metrics --json
    """
    if url is None:
        port = settings().metrics_port
        if not port:
            fail("no metrics endpoint: set ORRERY_METRICS_PORT to the port the worker serves, or pass --url")
        url = f"http://127.0.0.1:{port}/metrics"
    try:
        response = httpx.get(url, timeout=10)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        fail(f"cannot read metrics at {url} ({exc}); is a worker running with ORRERY_METRICS_PORT set?")
    families = parse(response.text)
    if as_json:
        payload = {f.name: [s.as_json(f.kind == "histogram") for _, s in sorted(f.series.items())] for f in families}
        print_json({"url": url, "metrics": payload})
        return
    rows = []
    for family in families:
        for _, series in sorted(family.series.items()):
            if family.kind == "histogram":
                value = (
                    f"{_number(series.count)} observed, mean {_number(series.total / series.count)} s, "
                    f"p95 ≈ {_number(series.quantile(0.95))} s"
                    if series.count
                    else "0 observed"
                )
            else:
                value = _number(series.value)
            rows.append((family.name, _labels(series.labels), value))
    show(console, [Col("metric", key=True), Col("labels"), Col("value")], rows, title=f"metrics at {url}")
    if not families:
        console.print("the endpoint served no orrery_ metrics (is it an Orrery worker?)")
