"""Importing this module registers every job, so the worker, the CLI and the docs see the complete table."""

from __future__ import annotations

from jobs import diagnostics, ingest, maintenance
from jobs.registry import all_jobs

__all__ = ["all_jobs", "diagnostics", "ingest", "maintenance"]
