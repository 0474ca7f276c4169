#!/usr/bin/env bash
# Frontend CI, from a fresh clone: Debian's Chromium (if missing), npm ci, library build, unit tests in
# headless Chromium (Angular 22, then the same library on Angular 21 in compat/ng21), demo build, e2e
# against the real gateway + OpenAI fake, then one closing line "N passed, N failed" (unit + e2e).
# Exits non-zero on any failure or missing report.
# Usage: CI=true bash frontend/ci.sh </dev/null   (needs the repo's .venv with `orchestra` for e2e)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
export NG_CLI_ANALYTICS=false CI="${CI:-true}"
export CHROME_BIN="${CHROME_BIN:-/usr/bin/chromium}"

step() { printf '\n== %s (at %ss)\n' "$*" "$SECONDS"; }
# Test steps write reports that the summary reads; other steps (format, builds, type-check) that fail are
# added to the summary's failures through ORC_STEP_FAILURES.
step_failures=0
gate() { "$@" || { echo "FAILED: $*"; step_failures=$((step_failures + 1)); return 1; }; }
tests() { "$@" || echo "FAILED: $* (see its report)"; }
ng21() { (cd compat/ng21 && npm "$@"); }

if [ ! -x "$CHROME_BIN" ]; then
  step "install Debian chromium"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq chromium fonts-liberation >/dev/null \
    || { echo "could not install chromium"; echo "0 passed, 1 failed"; exit 1; }
fi

step "npm ci"
npm ci --loglevel=error --no-audit --no-fund || { echo "0 passed, 1 failed"; exit 1; }

rm -rf test-results && mkdir -p test-results

step "format (prettier)"
gate npm run --silent format:check

step "build library"
if gate npm run --silent build:lib; then
  step "unit tests (Vitest in headless Chromium)"
  tests npm run --silent test:lib
  # The same library sources on Angular 21 and the system Node (the oldest supported major).
  step "Angular 21: npm ci, build library, unit tests (compat/ng21, node $(node -v))"
  if gate ng21 ci --loglevel=error --no-audit --no-fund && gate ng21 run --silent sync \
    && gate ng21 run --silent build:lib; then
    tests ng21 run --silent test:lib
  fi
  tests npm run --silent test:demo
  step "build demo"
  if gate npm run --silent build:demo; then
    step "type-check e2e and scripts"
    gate npm run --silent typecheck:node
    step "e2e (playwright-core + Chromium, real gateway)"
    tests npm run --silent e2e
    step "the guide on a fresh app (ng new, GUIDE.md's steps, build, stream in Chromium)"
    tests npm run --silent e2e:guide
  fi
fi

step "summary"
ORC_STEP_FAILURES="$step_failures" npm run --silent test:summary
