"""Figures and tables from stored results (no training): ``lalora figures`` (the tables: :mod:`.tables`).

For every ``results/<task>/<profile>/history.csv`` (with ``meta.json`` and ``chosen.csv`` beside it):

* ``figures/<task>-<profile>-accuracy-vs-epsilon.png``: final test accuracy per seed (points) and
  mean with 95 % t-interval, paper methods and ablations in separate panels, the non-private
  reference as a band, chance and majority-class lines;
* ``figures/<task>-<profile>-paired-differences.png``: LA-LoRA minus each baseline per epsilon
  (same seeds), with paired 95 % intervals;
* ``figures/<task>-<profile>-accuracy-vs-upload.png``: final accuracy against uploaded bytes;
* ``figures/<task>-<profile>-curves-eps<e>.png``: accuracy per evaluated round at the smallest budget;
* ``results/<task>/<profile>/summary.{csv,md}`` and ``paired.csv``: the tables, the chosen settings
  and what the tuning cost in privacy; for a comparison tuned on public data
  (``<profile>+public-tuning``) beside its private-tuned twin, ``tuning_gap.csv`` and its table:
  what tuning at no privacy cost gives up, paired by seed;
* ``results/ours-vs-paper.csv`` and ``figures/ours-vs-paper.png``: every stored comparison next to
  the paper cell it answers (:mod:`lalora_lite.study.paper`; stand-ins labelled, signs compared).
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from .paper import ours_vs_reported, plot_ours_vs_reported
from .stats import paired_differences, run_table, t_interval
from .style import CHANCE_STYLE, color, style
from .tables import ABLATION, PRIVATE_PAPER_METHODS, describe_task, eps_label, public_tuning_gap, write_summary

MARKERS = {"-": "o", ":": "s", "--": "D", "-.": "^"}


def _reference_lines(ax: plt.Axes, meta: dict) -> None:
    """The test split's majority-class and chance accuracy (when the results record them)."""
    if "test_majority" in meta:
        ax.axhline(100 * meta["test_majority"], label="majority class", **{**CHANCE_STYLE, "color": "grey", "ls": ":"})
        ax.axhline(100 * meta["test_chance"], label="chance", **CHANCE_STYLE)


@contextmanager
def _numpy_seed(seed: int) -> Iterator[None]:
    """numpy's global generator seeded inside the block and restored after it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def plot_accuracy_vs_epsilon(runs: pd.DataFrame, meta: dict, title: str, path: Path) -> None:
    """Per-seed points and mean +- 95 % t-interval per method and budget; two panels."""
    runs = runs.assign(acc=100 * runs["accuracy"])
    private = runs[~runs["epsilon_target"].apply(math.isinf)].assign(
        epsilon=lambda d: d["epsilon_target"].map("{:g}".format)
    )
    reference = runs[runs["epsilon_target"].apply(math.isinf)]
    panels = [
        (name, [m for m in group if m in set(private["method"])])
        for name, group in (("paper methods", PRIVATE_PAPER_METHODS), ("ablation: alternation x filter", ABLATION))
    ]
    # an ablation panel only where an ablation ran (not just the two paper methods it shares)
    panels = [(n, g) for n, g in panels if g and (n == "paper methods" or set(g) - set(PRIVATE_PAPER_METHODS))]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.4), sharey=True, squeeze=False)
    order = sorted(private["epsilon"].unique(), key=float)
    for ax, (name, methods) in zip(axes[0], panels):
        data = private[private["method"].isin(methods)]
        palette = {m: color(m) for m in methods}
        with _numpy_seed(0):  # seaborn jitters the points with numpy's global generator: fixed, the PNG is reproducible
            sns.stripplot(
                data=data,
                x="epsilon",
                y="acc",
                hue="method",
                hue_order=methods,
                order=order,
                palette=palette,
                dodge=True,
                alpha=0.45,
                size=4,
                jitter=0.08,
                ax=ax,
                legend=False,
            )
        sns.pointplot(
            data=data,
            x="epsilon",
            y="acc",
            hue="method",
            hue_order=methods,
            order=order,
            palette=palette,
            dodge=0.8 - 0.8 / len(methods),
            errorbar=lambda x: t_interval(x)[1:],
            capsize=0.08,
            markers=[MARKERS[style(m)["ls"]] for m in methods],
            linestyles=[style(m)["ls"] for m in methods],
            ax=ax,
        )
        if not reference.empty:
            mean, low, high = t_interval(reference["acc"])
            ax.axhspan(low if low == low else mean, high if high == high else mean, color=color("fedlora"), alpha=0.08)
            ax.axhline(mean, label="fedlora (no DP)", **style("fedlora"))
        _reference_lines(ax, meta)
        ax.set(xlabel="epsilon (delta = 1e-5)", ylabel="final test accuracy (%)", title=name)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(_wrap(title), fontsize=9)
    _save(fig, path)


def plot_paired_differences(paired: pd.DataFrame, runs: pd.DataFrame, title: str, path: Path) -> None:
    """LA-LoRA minus each baseline per budget: per-seed differences and the paired 95 % interval."""
    wide = runs.pivot_table(index=["epsilon_target", "seed"], columns="method", values="accuracy")
    baselines = list(dict.fromkeys(paired["baseline"]))
    epsilons = sorted(paired["epsilon"].unique())
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(epsilons) * len(baselines) / 2), 4.2))
    width = 0.8 / len(baselines)
    for j, baseline in enumerate(baselines):
        rows = paired[paired["baseline"] == baseline]
        x = np.array([epsilons.index(e) for e in rows["epsilon"]]) + (j - (len(baselines) - 1) / 2) * width
        ax.errorbar(
            x,
            100 * rows["difference"],
            yerr=[100 * (rows["difference"] - rows["ci_low"]), 100 * (rows["ci_high"] - rows["difference"])],
            fmt=MARKERS[style(baseline)["ls"]],
            capsize=3,
            color=color(baseline),
            label=f"LA-LoRA - {baseline}",
        )
        for xi, eps in zip(x, rows["epsilon"]):
            d = (wide.loc[eps]["lalora"] - wide.loc[eps][baseline]).dropna()
            ax.scatter(np.full(len(d), xi), 100 * d, s=10, alpha=0.4, color=color(baseline))
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(epsilons)), [f"eps={e:g}" for e in epsilons])
    ax.set(ylabel="accuracy difference (points)", title=_wrap(title))
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, ncol=2)
    _save(fig, path)


def plot_accuracy_vs_upload(runs: pd.DataFrame, title: str, path: Path) -> None:
    """Final accuracy against the bytes all clients uploaded in a run (one point per run)."""
    data = runs.assign(
        acc=100 * runs["accuracy"], upload_mb=runs["upload_bytes"] / 1e6, budget=runs["epsilon_target"].map(eps_label)
    )
    methods = list(dict.fromkeys(data["method"]))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sns.scatterplot(
        data=data,
        x="upload_mb",
        y="acc",
        hue="method",
        hue_order=methods,
        style="budget",
        palette={m: color(m) for m in methods},
        alpha=0.7,
        ax=ax,
    )
    ax.set(xlabel="uploaded per run, all clients (MB)", ylabel="final test accuracy (%)", title=_wrap(title))
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, ncol=2)
    _save(fig, path)


def plot_curves(history: pd.DataFrame, epsilon: float, meta: dict, title: str, path: Path) -> None:
    """Accuracy per evaluated round (mean over seeds, band = 95 % t-interval) at one budget, plus the reference."""
    keep = (history["epsilon_target"] == epsilon) | history["epsilon_target"].apply(math.isinf)
    data = history[keep].dropna(subset=["accuracy"]).assign(acc=lambda d: 100 * d["accuracy"])
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method, rows in data.groupby("method", sort=False):
        sns.lineplot(
            data=rows,
            x="round",
            y="acc",
            errorbar=lambda x: t_interval(x)[1:],
            label=method,
            color=color(method),
            linestyle=style(method)["ls"],
            marker=MARKERS[style(method)["ls"]],
            ax=ax,
        )
    _reference_lines(ax, meta)
    evaluated = sorted(data["round"].unique())
    if len(evaluated) <= 12:  # ticks at the rounds that were evaluated, not at rounds that have no point
        ax.set_xticks(evaluated)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="round (evaluated)", ylabel="test accuracy (%)", title=_wrap(title))
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: the bands fill the panel
    _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def draw_folder(folder: Path, figures_dir: Path) -> list[Path]:
    """Tables and figures of one ``results/<task>/<profile>/`` folder; returns the files written."""
    history = pd.read_csv(folder / "history.csv")
    task, profile = folder.parent.name, folder.name
    meta = json.loads((folder / "meta.json").read_text()) if (folder / "meta.json").exists() else {}
    chosen = pd.read_csv(folder / "chosen.csv") if (folder / "chosen.csv").exists() else None
    runs = run_table(history)
    paired = paired_differences(runs)
    written, gap = [], public_tuning_gap(folder, meta, runs)
    if isinstance(gap, pd.DataFrame):
        gap.to_csv(path := folder / "tuning_gap.csv", index=False)
        written.append(path)
    else:
        (folder / "tuning_gap.csv").unlink(missing_ok=True)  # a gap to runs that no longer pair is stale
    written.append(write_summary(folder, runs, paired, meta, chosen, gap))
    label = f"{describe_task(task)}\n[{profile} profile]"
    stem = figures_dir / f"{task}-{profile}"
    plot_accuracy_vs_epsilon(runs, meta, label, path := Path(f"{stem}-accuracy-vs-epsilon.png"))
    written.append(path)
    if not paired.empty:
        plot_paired_differences(paired, runs, label, path := Path(f"{stem}-paired-differences.png"))
        written.append(path)
    plot_accuracy_vs_upload(runs, label, path := Path(f"{stem}-accuracy-vs-upload.png"))
    written.append(path)
    finite = sorted(e for e in history["epsilon_target"].unique() if not math.isinf(e))
    if finite:
        path = Path(f"{stem}-curves-eps{finite[0]:g}.png")
        plot_curves(history, finite[0], meta, f"{label[:-1]}, eps={finite[0]:g}]", path)
        written.append(path)
    return written


def redraw(results_dir: Path = Path("results"), figures_dir: Path = Path("figures")) -> list[Path]:
    """Redraw every figure and summary table from the stored histories; returns the files written."""
    figures_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for history_path in sorted(results_dir.glob("*/*/history.csv")):
        written += draw_folder(history_path.parent, figures_dir)
    comparison = ours_vs_reported(results_dir)
    if not comparison.empty:
        comparison.to_csv(table_path := results_dir / "ours-vs-paper.csv", index=False)
        plot_ours_vs_reported(comparison, figure_path := figures_dir / "ours-vs-paper.png")
        written += [table_path, figure_path]
    return written


def _wrap(title: str, width: int = 70) -> str:
    return "\n".join(textwrap.fill(line, width) for line in title.splitlines())
