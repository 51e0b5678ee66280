#!/usr/bin/env bash
# Installs the service into .venv (idempotent) and starts it with the embedded default.
# Extra arguments go to `collective-sync serve` (e.g. --port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
# The browser modules the demo serves from /vendor/ (the invite's QR code), pinned in their lock
# file; without npm the demo runs without them (the share sheet shows the link, no QR code).
vendor=src/collective_sync/web/vendor
if command -v npm >/dev/null && ! cmp -s "$vendor/package-lock.json" "$vendor/node_modules/.installed-lock.json"; then
  npm ci --prefix "$vendor" --no-audit --no-fund --loglevel=error
  cp "$vendor/package-lock.json" "$vendor/node_modules/.installed-lock.json"
fi
exec .venv/bin/collective-sync serve "$@"
