"""The paper's reported numbers, as data: ``results/paper/reported.csv``.

One row per public cell of Liu et al. (ICLR 2026): ``table`` (main, ablation, language), ``model``,
``dataset``, ``epsilon`` (empty where the paper does not say), ``method`` (this package's method
names), ``accuracy`` (test accuracy, %), ``note`` and ``source``. Notebook 07 and ``lalora figures``
put our results next to these; nothing else in the package hard-codes a reported number.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .methods import METHODS

COLUMNS = ("table", "model", "dataset", "epsilon", "method", "accuracy", "note", "source")
TABLES = ("main", "ablation", "language")


def reported_path() -> Path:
    from .plotting import project_root

    return project_root() / "results" / "paper" / "reported.csv"


def reported(path: Path | None = None) -> pd.DataFrame:
    """The reported cells, checked: the columns above, known tables and methods, accuracies in [0, 100]."""
    path = path or reported_path()
    table = pd.read_csv(path)
    if tuple(table.columns) != COLUMNS:
        raise ValueError(f"{path}: columns must be {', '.join(COLUMNS)}; found {', '.join(table.columns)}")
    checks = [("table", set(TABLES)), ("method", set(METHODS))]
    for column, allowed in checks:
        bad = sorted(set(table[column]) - allowed)
        if bad:
            raise ValueError(f"{path}: unknown {column} {bad}; allowed: {', '.join(sorted(allowed))}")
    if not table["accuracy"].between(0, 100).all():
        raise ValueError(f"{path}: accuracies must be percentages in [0, 100]")
    return table
