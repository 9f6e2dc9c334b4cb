#!/usr/bin/env bash
# Install everything the test suite needs, then run the whole suite (unit, integration, e2e).
# This is the README's test command and what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

# Services the integration tests talk to (already running on the dev machines).
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi
# A real browser for tests/e2e (Debian's Chromium; nothing is downloaded by a test tool).
if ! command -v chromium >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
fi

# npm builds the dashboard's browser libraries (socket.io-client) into the package.
if ! command -v npm >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm) >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q -e '.[dev]'

export RAY_AUTH_MODE=disabled
export TICKSTOCK_REAL_DATA="${TICKSTOCK_REAL_DATA:-$(cd .. && pwd)/shared/data/real}"
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
