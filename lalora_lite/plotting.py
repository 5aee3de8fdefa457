"""Figures and tables from stored results (no training): ``lalora figures``.

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
  the paper cell it answers (:mod:`lalora_lite.paper`; stand-ins labelled, signs compared).
"""

from __future__ import annotations

import json
import math
import os
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
from .stats import LAST_EVALUATIONS, PUBLIC_TUNING, paired_differences, run_table, summary, t_interval, tuning_gap
from .style import CHANCE_STYLE, color, style

PAPER_METHODS = ("dp-lora", "ffa-lora", "rolora", "lalora")
ABLATION = ("dp-lora", "dp-lora+filter", "lalora-nofilter", "lalora")
MARKERS = {"-": "o", ":": "s", "--": "D", "-.": "^"}


def _eps_label(eps: float) -> str:
    return "no DP" if math.isinf(eps) else f"eps={eps:g}"


def _pct(value: float) -> str:
    return "" if value != value else f"{100 * value:.1f}"


def summary_markdown(table: pd.DataFrame, methods: tuple[str, ...] | None = None) -> str:
    """``method x epsilon`` table of ``mean [95 % interval] (n)`` (accuracy in %)."""
    table = table if methods is None else table[table["method"].isin(methods)]
    epsilons = sorted(table["epsilon"].unique())
    lines = ["| method | " + " | ".join(_eps_label(e) for e in epsilons) + " |", "|---" * (len(epsilons) + 1) + "|"]
    for method, rows in table.groupby("method", sort=False):
        cells = []
        for eps in epsilons:
            row = rows[rows["epsilon"] == eps]
            r = row.iloc[0] if not row.empty else None
            interval = "" if r is None or r["seeds"] < 2 else f" [{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]"
            cells.append("" if r is None else f"{_pct(r['mean'])}{interval} (n={int(r['seeds'])})")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _signed_interval(row) -> str:
    """``[low, high]`` of a difference in signed points; empty where one seed gives no interval."""
    return "" if pd.isna(row.ci_low) else f"[{100 * row.ci_low:+.1f}, {100 * row.ci_high:+.1f}]"


def paired_markdown(paired: pd.DataFrame) -> str:
    """LA-LoRA minus each baseline: difference in points with its paired interval and the verdict."""
    need = next(c for c in paired.columns if c.startswith("seeds_for_"))
    lines = ["| epsilon | LA-LoRA minus | difference (points) | 95 % interval | seeds | resolved | "
             f"seeds for {need.split('_')[-1].removesuffix('pt')} points |", "|---" * 7 + "|"]
    for r in paired.itertuples():
        seeds_needed = "" if pd.isna(getattr(r, need)) else int(getattr(r, need))
        lines.append(f"| {r.epsilon:g} | {r.baseline} | {100 * r.difference:+.1f} | {_signed_interval(r)} | "
                     f"{r.seeds} | {'yes' if r.resolved else 'no'} | {seeds_needed} |")
    return "\n".join(lines)


def tuning_gap_markdown(gap: pd.DataFrame) -> str:
    """Public-tuned minus private-tuned final accuracy (:func:`~lalora_lite.stats.tuning_gap`), in points."""
    lines = ["| method | epsilon | public minus private (points) | 95 % interval | seeds | resolved |",
             "|---" * 6 + "|"]
    for r in gap.itertuples():
        lines.append(f"| {r.method} | {_eps_label(r.epsilon)} | {100 * r.public_minus_private:+.1f} | "
                     f"{_signed_interval(r)} | {r.seeds} | {'yes' if r.resolved else 'no'} |")
    return "\n".join(lines)


def chosen_markdown(chosen: pd.DataFrame) -> str:
    lines = ["| method | epsilon | lr | clip | validation score | search runs | lr grid | clip grid | on an edge |",
             "|---" * 9 + "|"]
    for r in chosen.itertuples():
        edge = r.on_edge if isinstance(r.on_edge, str) and r.on_edge else "no"
        lines.append(f"| {r.method} | {_eps_label(r.epsilon)} | {r.lr:g} | {r.clip_norm:g} | {100 * r.score:.1f} | "
                     f"{r.search_runs} | {r.lr_grid} | {r.clip_grid} | {edge} |")
    return "\n".join(lines)


def tuning_cost(meta: dict, chosen: pd.DataFrame) -> str:
    """What the search tuned on which data, and what that means for the reported epsilon."""
    runs = int(chosen["search_runs"].sum())
    if meta.get("tuned_on") == "public":
        return (f"**What the tuning cost in privacy: nothing.** The settings were chosen by {runs} search runs on "
                f"`{meta['search_task']}`, public data that no client holds ({describe_task(meta['search_task'])}); "
                "no private example was read before the final runs, so the reported epsilon is the whole cost. "
                "What this gives up in accuracy is the difference to the same comparison tuned on the private "
                "validation split.")
    return (f"**What the tuning cost in privacy.** The settings were chosen by {runs} search runs on a "
            f"validation split drawn from the *private* pool, with seed {meta.get('search_seed', 0)}'s client "
            "split (the same clients' data as that seed's final run). Each search run is itself DP at its "
            "budget, but the reported epsilon covers one final run only: the selection is not accounted. "
            "A private selection would compose the runs it chose from (basic composition: up to "
            f"{int(chosen['search_runs'].max()) + 1} x epsilon for the clients of seed "
            f"{meta.get('search_seed', 0)}; random search with a random number of runs costs a small "
            "constant factor, Papernot & Steinke 2022). The other seeds' final runs reuse the chosen "
            "settings on different splits, as a practitioner reusing published settings would; the "
            "numbers here are, like the paper's, tuned-on-private-data results (`lalora compare "
            "--tune-on public` tunes at no privacy cost where a task has public data).")


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
    private = runs[~runs["epsilon_target"].apply(math.isinf)].assign(epsilon=lambda d: d["epsilon_target"].map("{:g}".format))
    reference = runs[runs["epsilon_target"].apply(math.isinf)]
    panels = [(name, [m for m in group if m in set(private["method"])]) for name, group in
              (("paper methods", PAPER_METHODS), ("ablation: alternation x filter", ABLATION))]
    panels = [(n, g) for n, g in panels if g]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.4), sharey=True, squeeze=False)
    order = sorted(private["epsilon"].unique(), key=float)
    for ax, (name, methods) in zip(axes[0], panels):
        data = private[private["method"].isin(methods)]
        palette = {m: color(m) for m in methods}
        with _numpy_seed(0):  # seaborn jitters the points with numpy's global generator: fixed, the PNG is reproducible
            sns.stripplot(data=data, x="epsilon", y="acc", hue="method", hue_order=methods, order=order,
                          palette=palette, dodge=True, alpha=0.45, size=4, jitter=0.08, ax=ax, legend=False)
        sns.pointplot(data=data, x="epsilon", y="acc", hue="method", hue_order=methods, order=order, palette=palette,
                      dodge=0.8 - 0.8 / len(methods), errorbar=lambda x: t_interval(x)[1:], capsize=0.08,
                      markers=[MARKERS[style(m)["ls"]] for m in methods],
                      linestyles=[style(m)["ls"] for m in methods], ax=ax)
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
        ax.errorbar(x, 100 * rows["difference"], yerr=[100 * (rows["difference"] - rows["ci_low"]),
                    100 * (rows["ci_high"] - rows["difference"])], fmt=MARKERS[style(baseline)["ls"]], capsize=3,
                    color=color(baseline), label=f"LA-LoRA - {baseline}")
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
    data = runs.assign(acc=100 * runs["accuracy"], upload_mb=runs["upload_bytes"] / 1e6,
                       budget=runs["epsilon_target"].map(_eps_label))
    methods = list(dict.fromkeys(data["method"]))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sns.scatterplot(data=data, x="upload_mb", y="acc", hue="method", hue_order=methods, style="budget",
                    palette={m: color(m) for m in methods}, alpha=0.7, ax=ax)
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
        sns.lineplot(data=rows, x="round", y="acc", errorbar=lambda x: t_interval(x)[1:], label=method,
                     color=color(method), linestyle=style(method)["ls"], marker=MARKERS[style(method)["ls"]], ax=ax)
    _reference_lines(ax, meta)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="round", ylabel="test accuracy (%)", title=_wrap(title))
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_summary(folder: Path, runs: pd.DataFrame, paired: pd.DataFrame, meta: dict,
                  chosen: pd.DataFrame | None, gap: pd.DataFrame | str | None = None) -> Path:
    """``summary.csv``, ``paired.csv`` and ``summary.md`` (tables, readings' raw material, tuning cost,
    and ``gap``, the :func:`~lalora_lite.stats.tuning_gap` of public tuning where there is one, or why
    it is not computed: :func:`public_tuning_gap`) from the
    :func:`~lalora_lite.stats.run_table` of a results folder."""
    task, profile = folder.parent.name, folder.name
    table = summary(runs)
    table.to_csv(folder / "summary.csv", index=False)
    paired.to_csv(folder / "paired.csv", index=False)
    parts = [f"# {task} ({profile} profile)", describe_task(task),
             "Final test accuracy (%): mean [95 % t-interval] (n seeds). "
             f"Chance {_pct(meta.get('test_chance', math.nan))} %, majority class "
             f"{_pct(meta.get('test_majority', math.nan))} %.", summary_markdown(table)]
    if set(ABLATION) <= set(table["method"]):
        parts += ["## Ablation", summary_markdown(table, ABLATION)]
    spread = table["last_spread"]
    parts.append(f"Stability: the spread (std) of a run's last {LAST_EVALUATIONS} evaluations, averaged per method "
                 f"and budget, is {_pct(spread.min())}-{_pct(spread.max())} points (median {_pct(spread.median())}).")
    if not paired.empty:
        parts += ["## Paired differences (same seeds, same client splits)", paired_markdown(paired)]
    if chosen is not None:
        parts += ["## Chosen settings", chosen_markdown(chosen), tuning_cost(meta, chosen)]
    if gap is not None:
        parts.append("## What tuning on public data gives up")
        parts += [gap] if isinstance(gap, str) else [  # a string says why the gap is not computed
            "Final test accuracy of this comparison minus that of the same methods, budgets and seeds tuned "
            "on the private validation split (`../" + folder.name.removesuffix(PUBLIC_TUNING) + "`), paired "
            "by seed; 0 where both searches chose the same setting (the same final runs).",
            tuning_gap_markdown(gap)]
    if "wall_s_this_invocation" in meta:
        parts.append(f"Wall time of the command that made these results: {meta['wall_s_this_invocation'] / 60:.1f} min "
                     f"({meta.get('workers', 1)} worker(s), device {meta.get('device', 'cpu')}).")
    path = folder / "summary.md"
    path.write_text("\n\n".join(parts) + "\n")
    return path


def public_tuning_gap(folder: Path, meta: dict, runs: pd.DataFrame) -> pd.DataFrame | str | None:
    """For a ``<profile>+public-tuning`` folder beside its private-tuned twin, the
    :func:`~lalora_lite.stats.tuning_gap` of ``runs`` (this folder's :func:`~lalora_lite.stats.run_table`)
    against the twin's; a sentence saying why not, where the twin ran with other profile settings (its
    runs do not pair with these); None for any other folder."""
    if not folder.name.endswith(PUBLIC_TUNING):
        return None
    twin = folder.parent / folder.name.removesuffix(PUBLIC_TUNING)
    if not (twin / "history.csv").exists():
        return None
    twin_meta = json.loads((twin / "meta.json").read_text()) if (twin / "meta.json").exists() else {}
    ours, theirs = meta.get("profile_settings") or {}, twin_meta.get("profile_settings") or {}
    changed = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
    if changed:
        return (f"Not computed: `../{twin.name}` ran with other profile settings ({', '.join(changed)}), so its "
                "final runs do not pair with these; run both comparisons at the same settings.")
    return tuning_gap(run_table(pd.read_csv(twin / "history.csv")), runs)


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


def describe_task(task: str) -> str:
    from .tasks import TASKS

    return TASKS[task].description if task in TASKS else task
