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
# Debian's Chromium for the web UI's browser tests (Playwright's own browser download is not reachable).
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
fi
# The real Restate server and restate-sdk: the other side of the wire in the interop tests.
bash scripts/install-peers.sh
# The Apache Kafka broker of the Kafka subscription tests (jars from Maven Central, cached in .kafka/).
bash scripts/install-kafka.sh
# The compose linter of the deployment-artifact tests (npm).
bash scripts/install-deploy-lint.sh
.venv/bin/ruff check src tests bench examples scripts
.venv/bin/python -m pytest -q "$@"
