"""Orrery's command line. `python run.py --help` lists every command."""

from cli import app

if __name__ == "__main__":
    app()
