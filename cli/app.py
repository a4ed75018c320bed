"""The root typer app; each module registers its commands here so `--help` lists them all."""

from __future__ import annotations

import typer

from cli import cycle as cycle_cli
from cli import database, demo, recall, samples
from cli import jobs as jobs_cli
from cli import metrics as metrics_cli
from cli import stores as stores_cli
from cli import worker as worker_cli
from cli.common import settings
from jobs.runtime.logs import configure_logging

app = typer.Typer(
    name="run.py",
    help=(
        "Orrery: the background runtime of an AI companion that remembers.\n\n"
        "With no DATABASE_URL / REDIS_URL set, an embedded Postgres and Redis start under ORRERY_DATA_DIR "
        "(default ./.orrery). Start with `python run.py doctor`."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _main() -> None:
    cfg = settings()  # fails with one line per bad variable before any command runs
    configure_logging(cfg.log_level, cfg.log_format)


app.command("migrate")(database.migrate_command)
app.command("doctor")(database.doctor_command)
app.add_typer(database.stack_app, name="stack")
app.command("seed-sample")(samples.seed_sample_command)
app.command("demo")(demo.demo_command)
app.command("worker")(worker_cli.worker_command)
app.command("health")(worker_cli.health_command)
app.command("trigger")(jobs_cli.trigger_command)
app.add_typer(jobs_cli.jobs_app, name="jobs")
app.add_typer(cycle_cli.cycle_app, name="cycle")
app.command("metrics")(metrics_cli.metrics_command)
app.command("recall")(recall.recall_command)
app.add_typer(stores_cli.sync_app, name="sync")
app.command("reconcile")(stores_cli.reconcile_command)
app.command("rebuild")(stores_cli.rebuild_command)
app.command("reembed")(stores_cli.reembed_command)
app.command("forget-user")(stores_cli.forget_user_command)
