#!/usr/bin/env bash
# The whole test suite on real Postgres and Redis (embedded unless TEST_DATABASE_URL / TEST_REDIS_URL are set).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
exec .venv/bin/python -m pytest "$@"
