"""The Prometheus metrics Orrery's workers serve, with their labels: the contract between the metrics code, the Grafana
dashboard (deploy/grafana/dashboards/orrery.json) and docs/operations.md. No user id is ever a label."""

from __future__ import annotations

METRICS: dict[str, frozenset[str]] = {
    "orrery_jobs_total": frozenset({"job", "outcome"}),  # outcome: succeeded, retried, dead, deferred
    "orrery_job_duration_seconds": frozenset({"job"}),
    "orrery_queue_depth": frozenset({"queue"}),
    "orrery_queue_oldest_age_seconds": frozenset({"queue"}),
    "orrery_jobs_in_flight": frozenset({"queue"}),
    "orrery_lease_takeovers_total": frozenset(),
    "orrery_cron_fired_total": frozenset({"job"}),
    "orrery_llm_calls_total": frozenset({"agent", "model", "outcome"}),
    "orrery_llm_tokens_total": frozenset({"agent", "model", "kind"}),  # kind: prompt, cached (of prompt), completion
    "orrery_llm_latency_seconds": frozenset({"agent", "model"}),
    "orrery_llm_cost_usd_total": frozenset({"agent", "model"}),
    "orrery_budget_deferrals_total": frozenset(),
    "orrery_outbox_backlog": frozenset({"store"}),
    "orrery_outbox_lag_seconds": frozenset({"store"}),
    "orrery_sync_store_failing_seconds": frozenset({"store"}),
    "orrery_reconcile_drift_total": frozenset({"store", "kind"}),
}

HISTOGRAMS = frozenset({"orrery_job_duration_seconds", "orrery_llm_latency_seconds"})
"""Served as <name>_bucket (with the `le` label), <name>_sum and <name>_count."""
