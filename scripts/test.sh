#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite, offline: unit tests, end-to-end runs of the
# main job in the smoke profile, and every notebook executed top to bottom in the smoke profile
# (tests/test_notebooks.py: nbclient, as nbmake does, plus a count of the inline figures).
# Two passes: every test but the "serial" ones on pytest-xdist workers, one per usable core
# (scripts/test_workers.py: affinity, cgroup quota, memory; each worker its share of threads); then the tests
# that start a Ray cluster, one at a time (Ray gives its raylet 30 s to start, which a loaded machine
# can miss). Extra arguments go to both passes; each lists its slowest tests.
# Usage: bash scripts/test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
LALORA_EXTRAS=flower,docs bash scripts/setup.sh  # the Flower tests and the course site need the optional extras
export HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error LALORA_PROFILE=smoke
# smoke-profile figures of the notebooks go to a scratch folder, not over the committed cpu figures
export LALORA_FIGURES="${LALORA_FIGURES:-$(mktemp -d)}"
read -r workers threads < <(.venv/bin/python scripts/test_workers.py)
parallel=0; OMP_NUM_THREADS="${OMP_NUM_THREADS:-$threads}" .venv/bin/python -m pytest -n "$workers" --dist worksteal --durations=20 -m "not serial" tests "$@" || parallel=$?
serial=0; .venv/bin/python -m pytest --durations=5 -m serial tests "$@" || serial=$?
# exit status 5: nothing collected (arguments that select tests of one pass only)
if [ "$parallel" -eq 5 ] && [ "$serial" -eq 5 ]; then exit 5; fi
for status in "$parallel" "$serial"; do
  if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then exit "$status"; fi
done
