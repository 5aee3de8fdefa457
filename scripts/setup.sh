#!/usr/bin/env bash
# Set up everything lalora-lite needs, idempotently:
#   1. the offline data packages (Debian: dataset-fashion-mnist, wordnet-base) where apt-get works;
#   2. a virtual environment .venv with the pinned requirements and the package itself.
# Usage: bash scripts/setup.sh        (PYTHON=python3.11 to choose the interpreter;
#        LALORA_EXTRAS=flower to add the optional Flower scale-out, docs the course site's Sphinx,
#        flower,docs both, as the tests do)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
DATA_PACKAGES="dataset-fashion-mnist wordnet-base"
DATA_FILES="/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz /usr/share/wordnet/data.noun"

missing_data() { for f in $DATA_FILES; do [ -e "$f" ] || return 0; done; return 1; }

if missing_data; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing offline data packages: $DATA_PACKAGES"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $DATA_PACKAGES >/dev/null; }; then
      echo "setup: WARNING: apt-get could not install $DATA_PACKAGES; the embedded tasks will try the online datasets instead" >&2
    fi
  else
    echo "setup: NOTE: Fashion-MNIST/WordNet files not found and apt-get is not usable here (needs Debian/Ubuntu and root)."
    echo "       Run 'sudo apt-get install $DATA_PACKAGES', or let the embedded tasks download the data"
    echo "       from the Hugging Face hub (needs internet). Unit tests do not need these files."
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
echo "setup: installing pinned requirements (first time: a few minutes)"
.venv/bin/python -m pip install -q -r requirements.txt
.venv/bin/python -m pip install -q --no-deps -e .
if [ -n "${LALORA_EXTRAS:-}" ]; then
  # optional extras resolve against the exact pins (requirements.txt as constraints)
  echo "setup: installing the optional extras [$LALORA_EXTRAS]"
  .venv/bin/python -m pip install -q -c requirements.txt -e ".[$LALORA_EXTRAS]"
fi
echo "setup: done. Activate with 'source .venv/bin/activate' or call .venv/bin/lalora"
