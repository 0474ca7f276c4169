#!/usr/bin/env bash
# The whole test suite: Python (gateway, CLI, fake) then the frontend (unit + browser e2e).
# Needs PostgreSQL on 127.0.0.1:5432 (database `test`) and Redis on 127.0.0.1:6379.
# SKIP_FRONTEND=1 runs the Python part only. Extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
mkdir -p test-results
rm -f test-results/pytest.xml test-results/frontend.log

"$VENV/bin/pytest" --junitxml=test-results/pytest.xml "$@"
python_status=$?

frontend_status=0
if [ -f frontend/ci.sh ] && [ "${SKIP_FRONTEND:-0}" != "1" ]; then
  ORCHESTRA_BIN="$PWD/$VENV/bin/orchestra" bash frontend/ci.sh 2>&1 | tee test-results/frontend.log
  frontend_status=${PIPESTATUS[0]}
fi

# One closing line for the whole run.
"$VENV/bin/python" - <<'PY'
import re, xml.etree.ElementTree as ET
from pathlib import Path
passed = failed = skipped = 0
junit = Path("test-results/pytest.xml")
if junit.exists():
    for suite in ET.parse(junit).getroot().iter("testsuite"):
        tests, fail, err, skip = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
        passed += tests - fail - err - skip
        failed += fail + err
        skipped += skip
else:
    failed += 1  # pytest did not even report
log = Path("test-results/frontend.log")
if log.exists():
    found = re.findall(r"^(\d+) passed, (\d+) failed(?:, (\d+) skipped)?$", log.read_text(), re.M)
    if found:
        p, f, s = found[-1]
        passed, failed, skipped = passed + int(p), failed + int(f), skipped + int(s or 0)
    else:
        failed += 1
print(f"total: {passed} passed, {failed} failed, {skipped} skipped")
PY

[ "$python_status" -eq 0 ] && [ "$frontend_status" -eq 0 ]
