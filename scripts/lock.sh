#!/usr/bin/env bash
# Regenerate the locked dependencies from pyproject.toml with `uv pip compile`:
#   requirements/prod.txt  core (+ the tracing extra once declared), for Linux on any CPU: the container image
#   requirements/dev.txt   core + every extra (dev, local-embeddings, …), for Linux x86_64: scripts/bootstrap.sh, CI
# Run it after changing a dependency in pyproject.toml, then `bash scripts/test.sh` (bootstrap reinstalls when the
# lock changes) and commit both files. Pins already in the files are kept unless a new requirement rules them out;
# extra arguments go to both compiles: `bash scripts/lock.sh --upgrade` (everything) or
# `bash scripts/lock.sh --upgrade-package openai`. Needs uv: .venv has it (dev extra), or set UV=/path/to/uv.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
uv="${UV:-.venv/bin/uv}"
if [ ! -x "$uv" ] && ! command -v "$uv" >/dev/null 2>&1; then
  echo "error: no uv at $uv; run 'bash scripts/bootstrap.sh' first (the dev extra installs it) or set UV=/path/to/uv" >&2
  exit 2
fi
# Resolve from where pip installs from: PyPI plus any find-links directory pip is configured with (on the project's
# machines /opt/wheels holds the CPU build of torch).
links="${PIP_FIND_LINKS:-}"
if [ -z "$links" ] && [ -x .venv/bin/python ]; then
  links="$(.venv/bin/python -m pip config get global.find-links 2>/dev/null || true)"
fi
sources=()
for link in $links; do
  sources+=(--find-links "$link")
done
# Extras the production image carries too, when pyproject.toml declares them (tests/deploy/test_lock.py: IMAGE_EXTRAS).
image_extras=()
for extra in tracing; do
  if grep -qE "^${extra} = \[" pyproject.toml; then image_extras+=(--extra "$extra"); fi
done
compile=("$uv" pip compile pyproject.toml --python-version 3.11 --quiet --custom-compile-command "bash scripts/lock.sh")
mkdir -p requirements
"${compile[@]}" --universal "${image_extras[@]}" -o requirements/prod.txt "$@"
# The dev lock pins exactly the production versions of every package both share (-c). torch is resolved afresh
# each time (within pyproject's pin) so the CPU build is chosen where one is offered, not the label-less pin below.
"${compile[@]}" --python-platform x86_64-manylinux_2_28 --all-extras --upgrade-package torch \
  -c requirements/prod.txt "${sources[@]}" -o requirements/dev.txt "$@"
# torch: the CPU build's local label (+cpu) is dropped, so pip installs the CPU wheel where its find-links or index
# offer one and the default build elsewhere (both are torch 2.13.0; the tests ran on the CPU build).
sed -i -E 's/^(torch==[^+ ;]+)\+cpu/\1/' requirements/dev.txt
echo "locked: requirements/prod.txt ($(grep -c '==' requirements/prod.txt) packages)," \
  "requirements/dev.txt ($(grep -c '==' requirements/dev.txt) packages)" >&2
