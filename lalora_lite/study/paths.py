"""Where the project's files go: the checkout's root, its ``figures/`` folder, and saving a figure there.

Notebooks and ``lalora figures`` save through :func:`save_figure`, so that ``$LALORA_FIGURES`` (the test
suite's scratch folder) redirects every figure at once.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt


def project_root() -> Path:
    """The checkout the working directory lies in (the folder holding ``lalora_lite/``), else the working directory."""
    here = Path.cwd().resolve()
    return next((p for p in (here, *here.parents) if (p / "lalora_lite").is_dir()), here)


def figures_dir() -> Path:
    """The project's ``figures/`` folder (``$LALORA_FIGURES``, else ``<project root>/figures``)."""
    path = Path(os.environ["LALORA_FIGURES"]) if "LALORA_FIGURES" in os.environ else project_root() / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_figure(fig: plt.Figure, name: str, profile: str) -> Path:
    """Save ``fig`` as ``figures/<name>-<profile>.png`` and return the path."""
    path = figures_dir() / f"{name}-{profile}.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path
