#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite, offline: unit tests and end-to-end runs.
# Usage: bash scripts/test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
.venv/bin/python -m pytest "$@"
