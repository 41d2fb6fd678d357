#!/usr/bin/env bash
# Set up a virtual environment with everything the tests need, then run the whole suite (lint included).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
# The real Restate server, for the interop tests (its npm package ships the binary).
RESTATE_VERSION=1.7.12
if [ "$(cat .interop/node_modules/@restatedev/restate-server/package.json 2>/dev/null \
        | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["version"])' 2>/dev/null)" != "$RESTATE_VERSION" ]; then
    mkdir -p .interop
    npm install --prefix .interop --no-audit --no-fund --silent "@restatedev/restate-server@$RESTATE_VERSION"
fi
# The real Python SDK, in its own environment (it is the other side of the wire in the interop tests).
if ! .interop/sdk-venv/bin/python -c 'import importlib.metadata as m; assert m.version("restate-sdk") == "1.2.0"' 2>/dev/null; then
    "$PY" -m venv .interop/sdk-venv
    .interop/sdk-venv/bin/python -m pip install --quiet "restate-sdk==1.2.0" "hypercorn>=0.17"
fi
.venv/bin/ruff check src tests bench examples scripts
.venv/bin/python -m pytest -q "$@"
