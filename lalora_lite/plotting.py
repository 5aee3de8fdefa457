"""Figures and tables from stored results (no training): ``lalora figures``.

For every ``results/<task>/<profile>/history.csv``:
``figures/<task>-<profile>-accuracy-vs-epsilon.png`` (final test accuracy, mean +- std over seeds),
``figures/<task>-<profile>-curves-eps<e>.png`` (accuracy per round at the smallest epsilon),
and ``results/<task>/<profile>/summary.{csv,md}`` (the table and the ablation).
"""

from __future__ import annotations

import math
import os
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from .style import color, style

ABLATION = ("dp-lora", "dp-lora+filter", "lalora-nofilter", "lalora")


def final_rows(history: pd.DataFrame) -> pd.DataFrame:
    """The last round of every run."""
    last = history.groupby(["method", "epsilon_target", "seed"])["round"].transform("max")
    return history[history["round"] == last]


def summary(history: pd.DataFrame) -> pd.DataFrame:
    """Final test accuracy per method and epsilon: mean, std and number of seeds."""
    final = final_rows(history)
    table = final.groupby(["method", "epsilon_target"], sort=False)["accuracy"].agg(["mean", "std", "count"])
    return table.reset_index().rename(columns={"epsilon_target": "epsilon", "count": "seeds"})


def _eps_label(eps: float) -> str:
    return "no DP" if math.isinf(eps) else f"eps={eps:g}"


def summary_markdown(table: pd.DataFrame, methods: list[str] | tuple[str, ...] | None = None) -> str:
    """``method x epsilon`` table of ``mean +- std`` (accuracy in %)."""
    table = table if methods is None else table[table["method"].isin(methods)]
    epsilons = sorted(table["epsilon"].unique())
    lines = ["| method | " + " | ".join(_eps_label(e) for e in epsilons) + " |", "|---" * (len(epsilons) + 1) + "|"]
    for method, rows in table.groupby("method", sort=False):
        cells = []
        for eps in epsilons:
            row = rows[rows["epsilon"] == eps]
            if row.empty:
                cells.append("")
            else:
                r = row.iloc[0]
                std = 0.0 if pd.isna(r["std"]) else r["std"]
                cells.append(f"{100 * r['mean']:.2f} +- {100 * std:.2f} (n={int(r['seeds'])})")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _finish_accuracy_plot(fig: plt.Figure, ax: plt.Axes, xlabel: str, title: str, path: Path) -> None:
    """Shared labels, wrapped title and legend; save to ``path`` and close."""
    ax.set(xlabel=xlabel, ylabel="test accuracy (%)")
    ax.set_title(_wrap(title), fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_accuracy_vs_epsilon(table: pd.DataFrame, title: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method, rows in table.groupby("method", sort=False):
        private = rows[~rows["epsilon"].apply(math.isinf)]
        if private.empty:  # the non-private reference: a horizontal band
            r = rows.iloc[0]
            ax.axhline(100 * r["mean"], lw=1, label=f"{method} (no DP)", **style(method))
            continue
        ax.errorbar(private["epsilon"], 100 * private["mean"], yerr=100 * private["std"].fillna(0), marker="o",
                    capsize=3, label=method, **style(method))
    _finish_accuracy_plot(fig, ax, "epsilon (delta = 1e-5)", title, path)


def plot_curves(history: pd.DataFrame, epsilon: float, title: str, path: Path) -> None:
    """Accuracy per round (mean over seeds, band = +- std) at one budget, plus the non-private reference."""
    keep = (history["epsilon_target"] == epsilon) | history["epsilon_target"].apply(math.isinf)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method, rows in history[keep].groupby("method", sort=False):
        stats = rows.groupby("round")["accuracy"].agg(["mean", "std"]).fillna(0)
        ax.plot(stats.index, 100 * stats["mean"], label=method, **style(method))
        ax.fill_between(stats.index, 100 * (stats["mean"] - stats["std"]), 100 * (stats["mean"] + stats["std"]),
                        alpha=0.15, color=color(method))
    _finish_accuracy_plot(fig, ax, "round", title, path)


def redraw(results_dir: Path = Path("results"), figures_dir: Path = Path("figures")) -> list[Path]:
    """Redraw every figure and summary table from the stored histories; returns the files written."""
    figures_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for history_path in sorted(results_dir.glob("*/*/history.csv")):
        history = pd.read_csv(history_path)
        task, profile = history_path.parent.parent.name, history_path.parent.name
        description = _description(task)
        table = summary(history)
        table.to_csv(history_path.parent / "summary.csv", index=False)
        markdown = f"# {task} ({profile} profile)\n\n{description}\n\nFinal test accuracy (%), mean +- std over seeds.\n\n"
        markdown += summary_markdown(table) + "\n"
        if set(ABLATION) <= set(table["method"]):
            markdown += "\n## Ablation\n\n" + summary_markdown(table, ABLATION) + "\n"
        (history_path.parent / "summary.md").write_text(markdown)
        written.append(history_path.parent / "summary.md")

        stem = f"{task}-{profile}"
        path = figures_dir / f"{stem}-accuracy-vs-epsilon.png"
        plot_accuracy_vs_epsilon(table, f"{description}\n[{profile} profile]", path)
        written.append(path)
        finite = sorted(e for e in table["epsilon"].unique() if not math.isinf(e))
        if finite:
            path = figures_dir / f"{stem}-curves-eps{finite[0]:g}.png"
            plot_curves(history, finite[0], f"{description}\n[{profile} profile, eps={finite[0]:g}]", path)
            written.append(path)
    return written


def _wrap(title: str, width: int = 70) -> str:
    return "\n".join(textwrap.fill(line, width) for line in title.splitlines())


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


def _description(task: str) -> str:
    from .tasks import TASKS

    return TASKS[task].description if task in TASKS else task
