#!/usr/bin/env bash
# Create .venv (once) and install automc with its dependencies into it.
# torch is pinned first: `pip install torch==2.13.0` takes the local CPU wheel where one is
# provided (find-links), so no CUDA packages are pulled. Elsewhere, point AUTOMC_TORCH_INDEX
# at a wheel index (e.g. https://download.pytorch.org/whl/cpu) to get a CPU-only build.
# Re-running is cheap: nothing is reinstalled unless pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
TORCH_SPEC="${AUTOMC_TORCH_SPEC:-torch==2.13.0}"

if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=".venv/.automc-setup-stamp"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
pipargs=(-q --disable-pip-version-check)
if [ -n "${AUTOMC_TORCH_INDEX:-}" ]; then
    .venv/bin/pip install "${pipargs[@]}" --index-url "$AUTOMC_TORCH_INDEX" "$TORCH_SPEC"
else
    .venv/bin/pip install "${pipargs[@]}" "$TORCH_SPEC"
fi
.venv/bin/pip install "${pipargs[@]}" -e ".[dev]"
echo "$want" > "$stamp"
