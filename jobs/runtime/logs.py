"""structlog set-up: JSON lines when not on a terminal (workers in production), readable on a terminal.

Off a terminal every line on stderr is one JSON object, whoever wrote it:
- other libraries' stdlib log records (httpx2's "HTTP Request: …" line per LLM call, arq, asyncpg) are rendered by
  the same processors, and below WARNING they are dropped unless ORRERY_LOG_LEVEL=DEBUG;
- a line is written with one `os.write` of the whole line, under a lock that a `--processes` parent shares with its
  children (share_write_lock), so two processes never write into one line: a write to a pipe is atomic only up to
  4 KiB, and a traceback in JSON is longer.
On a terminal, lines go through `sys.stderr` as it is at that moment, so a rich progress bar (which redirects it
while live) prints them above the bar instead of through it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import threading
from typing import Literal

import structlog

Format = Literal["auto", "json", "console"]


class LineLock:
    """An exclusive lock on a file (flock), held while one line is written: the kernel releases it when its holder
    dies, so a child SIGKILLed mid-line never blocks the others' logging (a multiprocessing lock would stay taken)."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._threads = threading.Lock()  # flock does not exclude threads sharing the descriptor

    def __enter__(self) -> None:
        self._threads.acquire()
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *_: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()


_write_lock: LineLock | None = None


def share_write_lock(path: str) -> None:
    """Write every line of this process under the lock file `path`: the --processes parent and each child call this
    with the same path."""
    global _write_lock
    _write_lock = LineLock(path)


def _write_line(line: str) -> None:
    data = (line + "\n").encode("utf-8", "backslashreplace")
    if _write_lock is None:
        _write_all(data)
        return
    with _write_lock:
        _write_all(data)


def _write_all(data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(2, view) :]


class LineLogger:
    """structlog's logger: one finished line per call, written whole (see the module docstring)."""

    def __init__(self, terminal: bool) -> None:
        self._terminal = terminal

    def msg(self, message: str) -> None:
        if self._terminal:
            stream = sys.stderr
            stream.write(message + "\n")
            stream.flush()
        else:
            _write_line(message)

    debug = info = warn = warning = error = err = critical = exception = fatal = failure = log = msg


class _LineHandler(logging.Handler):
    """The stdlib side: records formatted by structlog's processors, written as LineLogger writes."""

    def __init__(self, terminal: bool, formatter: logging.Formatter) -> None:
        super().__init__()
        self._logger = LineLogger(terminal)
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._logger.msg(self.format(record))
        except Exception:
            self.handleError(record)


def configure_logging(level: str = "INFO", fmt: Format = "auto") -> None:
    """Configure structlog and the stdlib root logger once per process."""
    terminal = sys.stderr.isatty()
    use_json = fmt == "json" or (fmt == "auto" and not terminal)
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=lambda *_: LineLogger(terminal and not use_json),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_LineHandler(terminal and not use_json, formatter))
    # Other libraries speak at WARNING and above (a line per HTTP request is noise), all of them at DEBUG.
    root.setLevel(logging.DEBUG if level == "DEBUG" else max(logging.WARNING, logging.getLevelName(level)))
