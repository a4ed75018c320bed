#!/usr/bin/env bash
# The demo on the embedded stack: seed a sample user, ingest the conversations through a real worker, show the result.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
exec .venv/bin/python run.py demo "$@"
