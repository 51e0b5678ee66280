#!/usr/bin/env bash
# Installs everything the tests need (idempotent), then runs lint, the Python suite (pytest) and
# the JavaScript suite (node --test).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest "$@"
# The browser SDK's JavaScript (plain ES modules) is tested with Node's own runner.
command -v node >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs; }
node --test tests/js/
