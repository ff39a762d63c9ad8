#!/usr/bin/env bash
# Set up (idempotent) and run the demo: evaluate and evolve the bundled shop prompt with SmolLM2-135M.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/lse demo "$@"
