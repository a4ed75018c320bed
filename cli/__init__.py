"""The `run.py` command line: one typer app, commands grouped by module."""

from cli.app import app

__all__ = ["app"]
