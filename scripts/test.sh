#!/usr/bin/env bash
# Installs everything the tests need (idempotent), then runs lint, the Python suite (pytest) and
# the JavaScript suite (node --test).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
# Browser tests drive Debian's Chromium through Playwright (no browser download); Node runs the JS tests.
missing=()
[ -x /usr/lib/chromium/chromium ] || command -v chromium >/dev/null || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# npm packages the tests use, versions pinned in each lock file: the real Supabase clients the
# Realtime-compatible endpoint is tested against (tests/realtime), and axe-core, which the browser
# tests inject into the demo (tests/browser); and the modules the demo itself serves from /vendor/
# (src/collective_sync/web/vendor: the QR code). Installed again only when a lock file changed.
for dir in tests/realtime tests/browser src/collective_sync/web/vendor; do
  if ! cmp -s "$dir/package-lock.json" "$dir/node_modules/.installed-lock.json"; then
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
    cp "$dir/package-lock.json" "$dir/node_modules/.installed-lock.json"
  fi
done
.venv/bin/ruff check --no-cache .  # no cache: a fresh clone (CI) sees what this sees
.venv/bin/ruff format --no-cache --check .
.venv/bin/mypy src/collective_sync bench
# Most tests wait on sockets, timers and browsers rather than compute, so two workers run them in
# about 60 % of the time. The few that judge same-instant audio (marked `solo`) run afterwards
# with nothing beside them: a neighbour test's CPU would starve the pages they record, and they
# would skip instead of judging. Exit code 5 is "nothing selected" (arguments naming one phase only).
ran=0
pytest_phase() {  # a phase that selects no test (exit 5) is skipped; any other failure stops here
  local status=0
  .venv/bin/python -m pytest "$@" || status=$?
  [ "$status" -eq 5 ] && return 0
  [ "$status" -eq 0 ] || exit "$status"
  ran=1
}
pytest_phase -n 2 -m "not solo" "$@"
pytest_phase -m solo "$@"
[ "$ran" -eq 1 ] || { echo "no test selected" >&2; exit 5; }
# The browser SDK's JavaScript (plain ES modules) is also tested with Node's own runner.
node --test tests/js/
