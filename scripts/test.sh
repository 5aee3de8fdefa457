#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite, offline: unit tests, end-to-end runs of the
# main job in the smoke profile, and every notebook executed top to bottom in the smoke profile
# (tests/test_notebooks.py: nbclient, as nbmake does, plus a count of the inline figures).
# Usage: bash scripts/test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
LALORA_EXTRAS=flower bash scripts/setup.sh  # the Flower tests need the optional extra
export HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error LALORA_PROFILE=smoke
# smoke-profile figures of the notebooks go to a scratch folder, not over the committed cpu figures
export LALORA_FIGURES="${LALORA_FIGURES:-$(mktemp -d)}"
.venv/bin/python -m pytest tests "$@"
