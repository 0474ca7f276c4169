#!/usr/bin/env bash
# The whole test suite: Python (gateway, CLI, fake) and, when present, the frontend.
# Needs PostgreSQL on 127.0.0.1:5432 (database `test`) and Redis on 127.0.0.1:6379.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
"$VENV/bin/pytest" "$@"
if [ -f frontend/ci.sh ] && [ "${SKIP_FRONTEND:-0}" != "1" ]; then
  bash frontend/ci.sh
fi
