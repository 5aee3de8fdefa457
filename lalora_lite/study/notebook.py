"""What the notebooks share: prose rendered from the run, a scratch results folder, known warnings off.

* :func:`say` renders markdown from an f-string, so that a number in a Reading, a claim or a worked
  solution is the run's own (``tests/test_notebook_text.py`` fails when a number in a markdown cell
  appears in no output, no code and no declared constant of its notebook).
* :func:`results_folder` is where a notebook writes measurements: a fresh scratch folder, unless the
  environment asks to update the committed ones (``LALORA_UPDATE_RESULTS=1`` with the ``cpu``
  profile), so that running a notebook never overwrites ``results/`` by accident.
* :func:`quiet` turns off the warnings and progress widgets that third-party libraries print and that
  say nothing about the run (deprecations inside Ray and Flower, opacus' secure-RNG notice, the
  Hugging Face loading widgets).
* :data:`STAMP` opens the first cell of a committed notebook: which profile, commit and machine made
  its outputs (written by ``scripts/execute_notebook.py``, checked by the tests).
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path

from lalora_lite.study.paths import project_root

UPDATE_VARIABLE = "LALORA_UPDATE_RESULTS"
STAMP = "> **Outputs below:**"


def say(text: str) -> None:
    """Display ``text`` as markdown under the cell."""
    from IPython.display import Markdown, display

    display(Markdown(text))


def updates_committed_results(profile: str) -> bool:
    """True when this run should write the committed ``results/`` (``cpu`` and ``LALORA_UPDATE_RESULTS=1``)."""
    return profile == "cpu" and os.environ.get(UPDATE_VARIABLE) == "1"


def results_folder(*parts: str, profile: str) -> Path:
    """``results/<parts>`` when :func:`updates_committed_results`, else the same path under a scratch folder."""
    base = (
        project_root() / "results" if updates_committed_results(profile) else Path(tempfile.mkdtemp(prefix="lalora-"))
    )
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def quiet() -> None:
    """Silence third-party warnings and progress widgets that are not about the run."""
    for module in ("ray", "flwr", "opacus", "transformers", "huggingface_hub", "timm", "torch"):
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=module)
        warnings.filterwarnings("ignore", category=FutureWarning, module=module)
    warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG turned off.*")
    warnings.filterwarnings("ignore", message=".*Using a non-full backward hook.*")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    for name in ("flwr", "ray", "transformers", "opacus"):
        logging.getLogger(name).setLevel(logging.ERROR)
