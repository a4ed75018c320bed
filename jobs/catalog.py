"""Every job Orrery runs, listed once: the worker, the CLI, the docs and the TypeScript client read this table.

A new job is a module in jobs/ and one line here; nothing registers itself on import.
"""

from __future__ import annotations

from jobs import (
    corrections,
    cycle_dispatch,
    cycle_report,
    diagnostics,
    ingestion,
    insight,
    maintenance,
    media,
    proactive_prompts,
    projection,
    reconcile,
    salience,
    sync,
)
from jobs.runtime.registry import JobTable

JOBS = JobTable(
    [
        ingestion.INGEST,
        media.MEDIA,
        media.SWEEP_MEDIA,
        maintenance.SWEEP_TIMEOUTS,
        maintenance.PRUNE_LEDGER,
        maintenance.EXPIRE_SESSIONS,
        diagnostics.ECHO,
        sync.SYNC_STORES,
        sync.SYNC_SWEEP,
        reconcile.RECONCILE,
        cycle_dispatch.CYCLE_DISPATCH,
        insight.INSIGHT,
        proactive_prompts.PROACTIVE_PROMPTS,
        proactive_prompts.PROACTIVE_PROMPTS_DAILY,
        cycle_report.CYCLE_REPORT,
        projection.PROJECTION,
        corrections.APPLY_CORRECTIONS,
        corrections.CORRECTIONS_SWEEP,
        projection.PROJECTION_REFRESH,
        salience.SALIENCE_REFRESH,
    ]
)
