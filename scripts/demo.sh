#!/usr/bin/env bash
# Set up .venv, then stylize the demo manifest on a local Ray; outputs go to outputs/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m jobs.stylize manifests/demo.yaml "$@"
