#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite, slow tests included, then lint.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest -q -ra "$@"
if [ -f vscode-client/package.json ] && command -v npm >/dev/null; then
  (cd vscode-client && npm ci --no-audit --no-fund && npm test)
fi
