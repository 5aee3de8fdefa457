"""The explanation study's figures (``figures/explain-<task>-<profile>-<hypothesis>.png``), one colour per method.

* ``curves``: H1, final validation accuracy along each method's lr x C curve, per budget (mean and 95 %
  t-interval over the seeds; the best point ringed);
* ``authors``: H2, test accuracy at a shared lr x C, at half of it and at each method's own best;
* ``dose``: H3, LA-LoRA minus each baseline (each at its best lr x C) against the noise multiplier;
* ``budget``: H4's and H5's paired differences.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .explain_analysis import curve_table
from .style import color, style


def _style(who: str) -> dict[str, str]:
    """A method's style; the authors'-noise arm in its method's colour, dotted."""
    method = who.split(" [")[0]
    return {**style(method), "ls": ":"} if "[" in who else style(method)


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_curves(runs: pd.DataFrame, best: pd.DataFrame, title: str, path: Path) -> Path:
    curves = curve_table(runs)
    epsilons = sorted(curves["epsilon"].unique())
    fig, axes = plt.subplots(1, len(epsilons), figsize=(5.2 * len(epsilons), 4.0), sharey=True, squeeze=False)
    for ax, eps in zip(axes[0], epsilons):
        for method, g in curves[curves["epsilon"] == eps].groupby("method", sort=False):
            g = g.sort_values("lr_clip")
            s = style(method)
            ax.plot(g["lr_clip"], 100 * g["mean"], marker="o", ms=4, label=method, color=s["color"], ls=s["ls"])
            ax.fill_between(g["lr_clip"], 100 * g["ci_low"], 100 * g["ci_high"], color=s["color"], alpha=0.12)
            b = best[(best["method"] == method) & (best["epsilon"] == eps)]
            ax.scatter(b["lr_clip"], 100 * b["mean"], s=90, facecolors="none", edgecolors=s["color"], lw=1.5)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(curves["lr_clip"].unique()), [f"{v:.2g}" for v in sorted(curves["lr_clip"].unique())])
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
        ax.set(xlabel="lr x C (C = 2)", title=f"eps = {eps:g}")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("final validation accuracy (%)")
    axes[0][-1].legend(fontsize=7, loc="lower left")
    fig.suptitle(title, fontsize=9, y=1.02)
    return _save(fig, path)


def plot_authors(summary: pd.DataFrame, title: str, path: Path) -> Path:
    epsilons = sorted(summary["epsilon"].unique())
    settings = ["shared", "half", "own"]
    who = list(dict.fromkeys(summary["method"]))
    fig, axes = plt.subplots(1, len(epsilons), figsize=(5.2 * len(epsilons), 4.0), sharey=True, squeeze=False)
    width = 0.8 / max(1, len(who))
    for ax, eps in zip(axes[0], epsilons):
        for j, w in enumerate(who):
            rows = summary[(summary["epsilon"] == eps) & (summary["method"] == w)].set_index("setting")
            rows = rows.reindex([s for s in settings if s in rows.index])
            x = np.array([settings.index(s) for s in rows.index]) + (j - (len(who) - 1) / 2) * width
            s = _style(w)
            ax.errorbar(
                x,
                100 * rows["mean"],
                yerr=[100 * (rows["mean"] - rows["ci_low"]), 100 * (rows["ci_high"] - rows["mean"])],
                fmt="o" if s["ls"] != ":" else "s",
                capsize=3,
                color=s["color"],
                label=w,
            )
        ax.set_xticks(range(3), ["shared lr x C\n(DP-LoRA's best)", "half of it", "each method's\nown best"])
        ax.set(title=f"eps = {eps:g}")
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel("final test accuracy (%)")
    axes[0][-1].legend(fontsize=7, loc="lower left")
    fig.suptitle(title, fontsize=9, y=1.02)
    return _save(fig, path)


def plot_dose(diffs: pd.DataFrame, title: str, path: Path) -> Path:
    rows = diffs[diffs["comparison"].str.startswith("sigma=")].copy()
    rows["sigma"] = rows["comparison"].str.extract(r"sigma=([0-9.]+)")[0].astype(float)
    rows["baseline"] = rows["comparison"].str.extract(r"minus (.+)$")[0]
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for j, (baseline, g) in enumerate(rows.groupby("baseline", sort=False)):
        g = g.sort_values("sigma")
        x = g["sigma"] * (1 + 0.03 * (j - 0.5))
        ax.errorbar(
            x,
            100 * g["difference"],
            yerr=[100 * (g["difference"] - g["ci_low"]), 100 * (g["ci_high"] - g["difference"])],
            fmt="o-",
            capsize=3,
            color=color(baseline),
            label=f"LA-LoRA - {baseline}",
        )
    ax.axhline(0, color="black", lw=0.8)
    ax.set(xlabel="median client noise multiplier sigma (0: clipping only)", ylabel="difference (points)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def plot_differences(diffs: pd.DataFrame, title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7.0, 0.45 * len(diffs) + 1.2))
    y = np.arange(len(diffs))[::-1]
    ax.errorbar(
        100 * diffs["difference"],
        y,
        xerr=[100 * (diffs["difference"] - diffs["ci_low"]), 100 * (diffs["ci_high"] - diffs["difference"])],
        fmt="o",
        capsize=3,
        color="black",
    )
    ax.set_yticks(y, diffs["comparison"], fontsize=7)
    ax.axvline(0, color="black", lw=0.8)
    ax.set(xlabel="difference (points, 95 % paired t-interval)")
    ax.grid(alpha=0.3, axis="x")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def plot_study(folder: Path, figures: Path, data: dict[str, pd.DataFrame], results: dict) -> list[Path]:
    """Every figure the study in ``folder`` (``results/explain/<task>/<profile>``) supports, from its tables
    ``data`` (:func:`.explain_analysis.load`) and their analysis ``results`` (:func:`.explain_analysis.analyse`)."""
    task, profile = folder.parent.name, folder.name
    stem = figures / f"explain-{task}-{profile}"
    written = []
    if "H1" in results:
        written.append(
            plot_curves(
                data["head-control"],
                results["H1"][0],
                f"H1 ({task}): does LoRA help under DP? lr x C curves, seeds as the unit",
                Path(f"{stem}-curves.png"),
            )
        )
    if "H2" in results:
        written.append(
            plot_authors(
                results["H2"][0],
                f"H2 ({task}): the authors' protocol at shared and tuned lr x C",
                Path(f"{stem}-authors.png"),
            )
        )
    if "H3" in results:
        written.append(
            plot_dose(results["H3"][1], f"H3 ({task}): LA-LoRA's margin against the noise", Path(f"{stem}-dose.png"))
        )
    rest = [k for k in ("H4", "H5") if k in results and not results[k][1].empty]
    rounds = "H4" in rest and results["H4"][1]["comparison"].str.startswith("rounds").any()
    subjects = {"H4": "no-noise alternation" + (" and twice the rounds" if rounds else ""), "H5": "filter width"}
    if rest:
        written.append(
            plot_differences(
                pd.concat([results[k][1] for k in rest], ignore_index=True),
                f"{', '.join(rest)} ({task}): {'; '.join(subjects[k] for k in rest)}",
                Path(f"{stem}-budget-filter.png"),
            )
        )
    return written
