#!/usr/bin/env bash
# The test command (README, .ci/run): set up .venv, then run the whole suite twice — torch on
# 1 thread and on 2 — so a numerical assertion that holds for only one summation order fails
# here rather than on a user's machine. Extra arguments go to pytest (e.g. -k int8, -m slow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
for threads in 1 2; do
    echo "== pytest, torch threads = $threads =="
    AUTOMC_TEST_THREADS=$threads .venv/bin/python -m pytest "$@"
done
