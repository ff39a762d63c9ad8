#!/usr/bin/env bash
# Set up (idempotent), lint and type-check, then run the whole test suite, slow tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/mypy  # the engine, the server and benchmarks/ ([tool.mypy] in pyproject.toml; engine and server strict)
.venv/bin/python -m pytest -q -ra "$@"
if [ -f vscode-client/package.json ] && command -v npm >/dev/null; then
  (cd vscode-client && npm ci --no-audit --no-fund && npm run lint && npm test)
  # end to end in a real VS Code: code-server + Playwright + Debian's chromium (tools cached in .e2e-tools/)
  if [ "${LSE_SKIP_E2E:-0}" != 1 ]; then
    (cd vscode-client && bash scripts/setup-e2e.sh && npm run test:e2e)
  fi
fi
