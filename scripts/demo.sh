#!/usr/bin/env bash
# Set up (idempotent) and run the demo: evolve the bundled shop prompt with Qwen2.5-Coder (0.5B answers, 1.5B
# evolves; both fetched once, with a notice) and compare the seed and the winner on unseen test questions.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/lse demo "$@"
