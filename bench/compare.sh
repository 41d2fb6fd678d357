#!/usr/bin/env bash
# Durably side by side with Restate and DBOS: install everything, run every workload on each system, and write
# docs/benchmarks.md with its chart (with --quick: one short run of each, written to .bench/quick.md).
# Arguments are passed to bench/compare/run.py (see its --help).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[bench]'
# Restate's server and restate-sdk, as the interop tests install them.
bash scripts/install-peers.sh
# DBOS from PyPI in its own environment, served by uvicorn like a typical DBOS app.
DBOS_VERSION=3.4.0
if ! .bench/dbos-venv/bin/python -c "import importlib.metadata as m; assert m.version('dbos') == '$DBOS_VERSION'" 2>/dev/null; then
    "$PY" -m venv .bench/dbos-venv
    .bench/dbos-venv/bin/python -m pip install --quiet "dbos==$DBOS_VERSION" "uvicorn[standard]>=0.30"
fi
# The HTTP load generator.
if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk
fi
exec .venv/bin/python bench/compare/run.py "$@"
