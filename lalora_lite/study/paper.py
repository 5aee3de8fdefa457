"""The paper's reported numbers, as data, and our results next to them.

``results/paper/reported.csv`` holds one row per public cell of Liu et al. (ICLR 2026): ``table``
(main, ablation, language, sharpness), ``model``, ``dataset``, ``epsilon`` (empty where the paper
does not say), ``method`` (this package's method names), ``metric`` (``accuracy`` in %, or
``top_hessian_eigenvalue``), ``value``, ``note`` and ``source``. Notebook 07 and ``lalora figures``
put our results next to these; nothing else in the package hard-codes a reported number.

Which paper cell a task of ours answers is :data:`PAPER_CELL`. A stand-in (``fmnist-swin``,
``wordnet-minilm``) answers the paper's *question* (does LA-LoRA beat each baseline, at which
budget) but not its numbers: its accuracies are on another dataset and model, and only the signs of
the paired differences are compared with the paper's.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..methods import METHODS
from .paths import project_root
from .stats import paired_differences, run_table, summary
from .style import color

COLUMNS = ("table", "model", "dataset", "epsilon", "method", "metric", "value", "note", "source")
TABLES = ("main", "ablation", "language", "sharpness")
METRICS = ("accuracy", "top_hessian_eigenvalue")
# our task -> (the paper's model, dataset) it answers, and whether it is a stand-in
PAPER_CELL = {
    "cifar100-swin-t": ("Swin-T", "CIFAR-100", False),
    "tinyimagenet-swin-t": ("Swin-T", "Tiny-ImageNet", False),
    "cifar100-swin-b": ("Swin-B", "CIFAR-100", False),
    "tinyimagenet-swin-b": ("Swin-B", "Tiny-ImageNet", False),
    "sst2-roberta": ("RoBERTa-base", "SST-2", False),
    "qnli-roberta": ("RoBERTa-base", "QNLI", False),
    "mnli-roberta": ("RoBERTa-base", "MNLI", False),
    "qqp-roberta": ("RoBERTa-base", "QQP", False),
    "fmnist-swin": ("Swin-T", "CIFAR-100", True),
    "fmnist-swin-wide": ("Swin-B", "CIFAR-100", True),
    "wordnet-minilm": ("RoBERTa-base", "QNLI", True),
}


def reported_path() -> Path:
    return project_root() / "results" / "paper" / "reported.csv"


def reported(path: Path | None = None) -> pd.DataFrame:
    """The reported cells, checked: the columns above, known tables, methods and metrics, accuracies
    in [0, 100], eigenvalues > 0."""
    path = path or reported_path()
    table = pd.read_csv(path)
    if tuple(table.columns) != COLUMNS:
        raise ValueError(f"{path}: columns must be {', '.join(COLUMNS)}; found {', '.join(table.columns)}")
    for column, allowed in (("table", set(TABLES)), ("method", set(METHODS)), ("metric", set(METRICS))):
        bad = sorted(set(table[column]) - allowed)
        if bad:
            raise ValueError(f"{path}: unknown {column} {bad}; allowed: {', '.join(sorted(allowed))}")
    accuracy = table["metric"] == "accuracy"
    if not table.loc[accuracy, "value"].between(0, 100).all():
        raise ValueError(f"{path}: accuracies must be percentages in [0, 100]")
    if not (table.loc[~accuracy, "value"] > 0).all():
        raise ValueError(f"{path}: eigenvalues must be > 0")
    return table


def paper_layout(table: pd.DataFrame, name: str) -> pd.DataFrame:
    """One reported table as the paper prints it: a row per (model, dataset, epsilon), a column per method."""
    rows = table[table["table"] == name]
    methods = [m for m in METHODS if m in set(rows["method"])]
    return rows.pivot_table(index=["model", "dataset", "epsilon"], columns="method", values="value", dropna=False)[
        methods
    ].dropna(how="all")


def ours_vs_reported(results_dir: Path, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every stored comparison (``results/<task>/<profile>/history.csv``) next to the paper's cell it answers.

    One row per (task, profile, method, epsilon) that the paper reports for the same model and dataset,
    at the same epsilon: our mean and 95 % interval, the paper's value, the difference (meaningful
    only for a non-stand-in), and for each baseline the paper's sign of LA-LoRA minus it against our
    difference (``agrees``: resolved after the Holm correction, on the paper's side of 0; ``contradicts``:
    resolved, on the other side; ``unresolved``: not resolved after the correction).
    """
    table = reported() if table is None else table
    accuracy = table[(table["metric"] == "accuracy") & table["epsilon"].notna()]
    rows = []
    for history_path in sorted(results_dir.glob("*/*/history.csv")):
        task, profile = history_path.parent.parent.name, history_path.parent.name
        if task not in PAPER_CELL:
            continue
        model, dataset, stand_in = PAPER_CELL[task]
        runs = run_table(pd.read_csv(history_path))
        ours, paired = summary(runs), paired_differences(runs)
        cell = accuracy[(accuracy["model"] == model) & (accuracy["dataset"] == dataset)]
        for r in cell.itertuples():
            mine = ours[(ours["method"] == r.method) & (ours["epsilon"] == r.epsilon)]
            if mine.empty:
                continue
            m = mine.iloc[0]
            row = {
                "task": task,
                "profile": profile,
                "stand_in": stand_in,
                "paper_table": r.table,
                "model": model,
                "dataset": dataset,
                "epsilon": r.epsilon,
                "method": r.method,
                "ours": 100 * m["mean"],
                "ours_low": 100 * m["ci_low"],
                "ours_high": 100 * m["ci_high"],
                "seeds": int(m["seeds"]),
                "paper": r.value,
                # levels compare only where the setting is the paper's; a stand-in is compared by sign
                "ours_minus_paper": math.nan if stand_in else 100 * m["mean"] - r.value,
            }
            lalora = cell[(cell["method"] == "lalora") & (cell["epsilon"] == r.epsilon)]
            pair = (
                paired[(paired["baseline"] == r.method) & (paired["epsilon"] == r.epsilon)] if len(paired) else paired
            )
            if r.method != "lalora" and not lalora.empty and not pair.empty:
                paper_sign = np.sign(lalora["value"].item() - r.value)
                low, high = 100 * pair["ci_low"].item(), 100 * pair["ci_high"].item()
                difference, resolved = pair["difference"].item(), bool(pair["resolved"].item())
                row |= {
                    "lalora_minus_it": 100 * pair["difference"].item(),
                    "diff_low": low,
                    "diff_high": high,
                    "paper_lalora_minus_it": lalora["value"].item() - r.value,
                    "p_holm": pair["p_holm"].item(),
                    "sign": _sign_verdict(paper_sign, difference, resolved),
                }
            rows.append(row)
    return pd.DataFrame(rows)


def paper_claims(task: str, paired: pd.DataFrame, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """The paper's claim "LA-LoRA beats <baseline>" for every baseline and budget we measured on ``task``
    (our paired differences, :func:`~lalora_lite.study.stats.paired_differences`), next to the paper's own
    difference on the cell ``task`` answers (at the budget it reports), with a verdict from our interval."""
    table = reported() if table is None else table
    model, dataset, stand_in = PAPER_CELL[task]
    cell = table[(table["model"] == model) & (table["dataset"] == dataset) & (table["metric"] == "accuracy")]
    rows = []
    for r in paired.itertuples():
        theirs = cell[cell["method"].isin(["lalora", r.baseline]) & (cell["epsilon"] == r.epsilon)]
        value = theirs.drop_duplicates("method").set_index("method")["value"]
        paper = (
            f"{value['lalora'] - value[r.baseline]:+.2f} points ({model} / {dataset}, eps={r.epsilon:g})"
            if len(value) == 2
            else f"no row at eps={r.epsilon:g}"
        )
        sign = _sign_verdict(1.0, r.difference, r.resolved)
        verdict = {"agrees": "reproduces", "contradicts": "does not reproduce", "unresolved": "unresolved"}[sign]
        rows.append(
            {
                "claim": f"LA-LoRA beats {r.baseline} at eps={r.epsilon:g}",
                "paper": paper,
                "measured": f"{100 * r.difference:+.1f} points "
                + (
                    f"[{100 * r.ci_low:+.1f}, {100 * r.ci_high:+.1f}], {r.seeds} paired seeds, Holm p = {r.p_holm:.2f}"
                    if r.seeds > 1
                    else "(1 seed: no interval)"
                )
                + (" (stand-in)" if stand_in else ""),
                "verdict": verdict,
            }
        )
    return pd.DataFrame(rows)


def _sign_verdict(paper_sign: float, difference: float, resolved: bool) -> str:
    """``agrees`` / ``contradicts`` (the paper's sign of LA-LoRA minus a baseline against ours) where our
    difference is resolved after the Holm correction over its table, else ``unresolved``."""
    if not resolved or math.isnan(difference):
        return "unresolved"
    return "agrees" if np.sign(difference) == paper_sign else "contradicts"


def plot_ours_vs_reported(comparison: pd.DataFrame, path: Path) -> None:
    """One panel per (task, profile, epsilon): our LA-LoRA minus each baseline (mean, 95 % paired interval),
    with the paper's side of 0 shaded. A stand-in is compared with the paper by sign only, so the paper's
    magnitude is drawn (open marker) only where the setting is the paper's own."""
    rows_with_pairs = comparison.dropna(subset=["lalora_minus_it"])
    groups = list(rows_with_pairs.groupby(["task", "profile", "epsilon"], sort=False))
    fig, axes = plt.subplots(
        1,
        max(len(groups), 1),
        figsize=(4.0 * max(len(groups), 1), 3.8),
        squeeze=False,
        sharey=True,
        layout="constrained",
    )
    for ax, ((task, profile, eps), rows) in zip(axes[0], groups):
        x = np.arange(len(rows))
        for xi, r in zip(x, rows.itertuples()):
            side = (0, 100) if r.paper_lalora_minus_it > 0 else (-100, 0)
            ax.fill_between([xi - 0.4, xi + 0.4], *side, color="#009E73", alpha=0.10, lw=0)
            ax.errorbar(
                xi,
                r.lalora_minus_it,
                yerr=[[r.lalora_minus_it - r.diff_low], [r.diff_high - r.lalora_minus_it]],
                fmt="o",
                color=color(r.method),
                ecolor="black",
                capsize=3,
            )
            if not r.stand_in:
                ax.scatter(xi, r.paper_lalora_minus_it, facecolors="none", edgecolors=color(r.method), s=60)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(x, [f"minus {m}" for m in rows["method"]], fontsize=8)
        model, dataset, stand_in = PAPER_CELL[task]
        label = f"{task} [{profile}]" + (" (stand-in: sign only)" if stand_in else "")
        ax.set_title(f"{label}\npaper: {model} / {dataset}, eps={eps:g}", fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    spread = pd.concat([rows_with_pairs["diff_low"], rows_with_pairs["diff_high"], rows_with_pairs["lalora_minus_it"]])
    spread = spread[np.isfinite(spread)]  # one seed: no interval
    low, high = (spread.min(), spread.max()) if len(spread) else (0.0, 0.0)
    axes[0][0].set_ylim(min(low, 0) - 2, max(high, 0) + 2)  # the panels share y
    axes[0][0].set_ylabel("LA-LoRA minus baseline (points)\nshaded: the paper's side of 0")
    fig.savefig(path, dpi=120)
    plt.close(fig)
