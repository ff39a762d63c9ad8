#!/usr/bin/env bash
# Create .venv and install LSE (the distribution lse-prompts) with its dev extras, from wheels only: pip may
# not build any dependency from source (--only-binary=:all:) and CC/CXX are `false`, so any attempt to
# compile C/C++ fails at once instead of taking 20 minutes. torch==2.13.0 first: on our machines it is a local
# CPU build; any other torch requirement would pull several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
export CC=false CXX=false
pip_install() { .venv/bin/python -m pip install -q --only-binary=:all: "$@"; }
pip_install --upgrade pip
pip_install torch==2.13.0
# the project's old distribution name: an install under it would keep its own editable finder and scripts
if .venv/bin/python -m pip show -q lse >/dev/null 2>&1; then
  .venv/bin/python -m pip uninstall -y -q lse
fi
pip_install -e ".[dev]"
