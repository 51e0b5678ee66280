#!/usr/bin/env bash
# Installs the service into .venv (idempotent) and starts it with the embedded default.
# Extra arguments go to `collective-sync serve` (e.g. --port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
exec .venv/bin/collective-sync serve "$@"
