#!/usr/bin/env bash
# The test command (README, .ci/run): set up .venv, then run the suite with torch on 1 thread,
# and again on 2 — so a numerical assertion that holds for only one summation order fails here
# rather than on a user's machine. The second pass leaves out the tests marked one_pass (input
# checks, files, locks, HTTP, rendering: nothing a summation order changes), which keeps CI well
# inside its limit on a slow CPU. Extra arguments go to pytest (e.g. -k int8, -m slow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== pytest, torch threads = 1 =="
AUTOMC_TEST_THREADS=1 .venv/bin/python -m pytest "$@"
echo "== pytest, torch threads = 2 (tests marked one_pass left out) =="
AUTOMC_TEST_THREADS=2 AUTOMC_TEST_REPEAT=1 .venv/bin/python -m pytest "$@"
