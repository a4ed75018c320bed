"""The root typer app; each module registers its commands here so `--help` lists them all.

Help is click's plain layout (`rich_markup_mode=None` on every Typer): typer's rich layout printed every flag with a
type, `--json <bool>`, as if it took a value. Every command's help ends with examples; `run.py` in them is written
as the command that works where it is read (`.venv/bin/python run.py` from a fresh clone).
"""

from __future__ import annotations

import inspect
import re

import typer

from cli import cycle as cycle_cli
from cli import database, demo, doctor, forget, rebuild, recall, reconcile, samples, sync, trigger
from cli import jobs as jobs_cli
from cli import memory as memory_cli
from cli import metrics as metrics_cli
from cli import worker as worker_cli
from cli.common import invocation, settings
from jobs.runtime.logs import configure_logging

app = typer.Typer(
    name="run.py",
    help=(
        "Orrery: the background runtime of an AI companion that remembers.\n\n"
        "With no DATABASE_URL / REDIS_URL set, an embedded Postgres and Redis start under ORRERY_DATA_DIR "
        "(default ./.orrery). Start with `run.py doctor`; `bash scripts/demo.sh` shows the whole path.\n\n"
        "Exit codes: 0 done or healthy; 1 the thing checked is not right; 2 bad input, configuration or an unknown "
        "id (one `error:` line); 3 `trigger --wait` gave up."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _main() -> None:
    cfg = settings()  # fails with one line per bad variable before any command runs
    configure_logging(cfg.log_level, cfg.log_format)


app.command("migrate")(database.migrate_command)
app.command("doctor")(doctor.doctor_command)
app.add_typer(database.stack_app, name="stack")
app.command("seed-sample")(samples.seed_sample_command)
app.command("demo")(demo.demo_command)
app.command("worker")(worker_cli.worker_command)
app.command("health")(worker_cli.health_command)
app.command("trigger")(trigger.trigger_command)
app.add_typer(jobs_cli.jobs_app, name="jobs")
app.add_typer(cycle_cli.cycle_app, name="cycle")
app.command("metrics")(metrics_cli.metrics_command)
app.command("recall")(recall.recall_command)
app.add_typer(memory_cli.memory_app, name="memory")
app.add_typer(sync.sync_app, name="sync")
app.command("reconcile")(reconcile.reconcile_command)
app.command("rebuild")(rebuild.rebuild_command)
app.command("reembed")(rebuild.reembed_command)
app.command("forget-user")(forget.forget_user_command)

_RUN_PY = re.compile(r"(^|[\s`(])run\.py(?= )", re.MULTILINE)


def runnable_help(text: str) -> str:
    """`run.py …` in help text written as the command that works here."""
    return _RUN_PY.sub(lambda match: match.group(1) + invocation(), text)


def _rewrite_help(typer_app: typer.Typer) -> None:
    for command in typer_app.registered_commands:
        text = command.help or inspect.getdoc(command.callback) or ""
        command.help = runnable_help(text)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _rewrite_help(group.typer_instance)
    if isinstance(typer_app.info.help, str):
        typer_app.info.help = runnable_help(typer_app.info.help)


_rewrite_help(app)
