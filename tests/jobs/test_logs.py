"""Off a terminal every line a worker writes is one JSON object (issue 21, item 10): other libraries' records go
through the same renderer (httpx2's INFO line per LLM request is dropped), and two processes writing long lines
into one pipe never share a line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.cli.runner import ROOT

WRITER = """
import logging, sys
import structlog
from jobs.runtime.logs import configure_logging, share_write_lock
share_write_lock(sys.argv[1])
configure_logging("INFO", "json")
logging.getLogger("httpx2").info('HTTP Request: POST http://127.0.0.1/v1/chat/completions "HTTP/1.1 200 OK"')
logging.getLogger("neo4j").warning("a library's warning")
log = structlog.get_logger("test")
for i in range(200):
    log.info("long line", i=i, writer=sys.argv[2], payload="x" * 20_000)
"""


def test_two_processes_write_whole_json_lines_into_one_pipe(tmp_path: Path) -> None:
    lock = tmp_path / "log.lock"
    read_end, write_end = os.pipe()
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(lock), name], cwd=ROOT, stderr=write_end)
        for name in ("a", "b")
    ]
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        output = pipe.read()
    assert all(writer.wait(60) == 0 for writer in writers)

    lines = output.decode().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one whole JSON object
    assert sorted((r["writer"], r["i"]) for r in records if r["event"] == "long line") == sorted(
        (name, i) for name in ("a", "b") for i in range(200)
    )
    warnings = [r for r in records if r["event"] == "a library's warning"]
    assert len(warnings) == 2 and warnings[0]["logger"] == "neo4j" and warnings[0]["level"] == "warning"
    assert not any("HTTP Request" in line for line in lines), "a line per LLM request is noise below WARNING"
