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
# The real Restate server and restate-sdk: the other side of the wire in the interop tests.
bash scripts/install-peers.sh
# The compose linter of the deployment-artifact tests (npm).
bash scripts/install-deploy-lint.sh
.venv/bin/ruff check src tests bench examples scripts
.venv/bin/python -m pytest -q "$@"
