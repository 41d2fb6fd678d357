#!/usr/bin/env bash
# Install the peers Durably is tested and measured against, each isolated from Durably's own environment:
#   .interop/node_modules   the real Restate server (its npm package ships the binary)
#   .interop/sdk-venv       the real restate-sdk for Python (1.2.0), with hypercorn to serve it
#   .interop/sdk13-venv     restate-sdk 1.3.0 (state_preload, discovery v5), the same way; the interop tests
#                           that drive restate-sdk deployments run against both
# Used by scripts/test.sh (interop tests) and bench/compare.sh (benchmarks). Idempotent: a second run checks
# the installed versions and installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
RESTATE_VERSION=1.7.12
RESTATE_SDK_VERSION=1.2.0
RESTATE_SDK13_VERSION=1.3.0
if [ "$(cat .interop/node_modules/@restatedev/restate-server/package.json 2>/dev/null \
        | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["version"])' 2>/dev/null)" != "$RESTATE_VERSION" ]; then
    mkdir -p .interop
    npm install --prefix .interop --no-audit --no-fund --silent "@restatedev/restate-server@$RESTATE_VERSION"
fi
if ! .interop/sdk-venv/bin/python -c "import importlib.metadata as m; assert m.version('restate-sdk') == '$RESTATE_SDK_VERSION'" 2>/dev/null; then
    "$PY" -m venv .interop/sdk-venv
    .interop/sdk-venv/bin/python -m pip install --quiet "restate-sdk==$RESTATE_SDK_VERSION" "hypercorn>=0.17"
fi
if ! .interop/sdk13-venv/bin/python -c "import importlib.metadata as m; assert m.version('restate-sdk') == '$RESTATE_SDK13_VERSION'" 2>/dev/null; then
    "$PY" -m venv .interop/sdk13-venv
    .interop/sdk13-venv/bin/python -m pip install --quiet "restate-sdk==$RESTATE_SDK13_VERSION" "hypercorn>=0.17"
fi
