"""The tables of ``lalora figures``: ``results/<task>/<profile>/summary.{csv,md}``, ``paired.csv`` and
``tuning_gap.csv``, written from a results folder's :func:`~lalora_lite.study.stats.run_table`.

``summary.md`` holds the accuracy table (mean [95 % t-interval] (n seeds)), the ablation, the paired
differences with their verdicts, the chosen settings and what the tuning cost in privacy, and for a
comparison tuned on public data beside its private-tuned twin, what tuning at no privacy cost gives up.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from ..methods import get_method
from ..tasks import TASKS
from ..tasks.profiles import PAPER_METHODS
from .stats import LAST_EVALUATIONS, PUBLIC_TUNING, run_table, summary, tuning_gap

PRIVATE_PAPER_METHODS = tuple(m for m in PAPER_METHODS if get_method(m).private)  # the panel of DP methods
ABLATION = ("dp-lora", "dp-lora+filter", "lalora-nofilter", "lalora")


def eps_label(eps: float) -> str:
    """``eps=3`` for a budget, ``no DP`` for infinity."""
    return "no DP" if math.isinf(eps) else f"eps={eps:g}"


def pct(value: float) -> str:
    """A fraction in percent with one decimal (empty for NaN)."""
    return "" if value != value else f"{100 * value:.1f}"


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    """A GitHub markdown table: ``| a | b |`` lines under the header and its ``|---|---|`` rule."""
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def summary_markdown(table: pd.DataFrame, methods: tuple[str, ...] | None = None) -> str:
    """``method x epsilon`` table of ``mean [95 % interval] (n)`` (accuracy in %)."""
    table = table if methods is None else table[table["method"].isin(methods)]
    epsilons = sorted(table["epsilon"].unique())
    rows = []
    for method, by_method in table.groupby("method", sort=False):
        cells = []
        for eps in epsilons:
            row = by_method[by_method["epsilon"] == eps]
            r = row.iloc[0] if not row.empty else None
            interval = "" if r is None or r["seeds"] < 2 else f" [{pct(r['ci_low'])}, {pct(r['ci_high'])}]"
            cells.append("" if r is None else f"{pct(r['mean'])}{interval} (n={int(r['seeds'])})")
        rows.append([method, *cells])
    return markdown_table(["method", *(eps_label(e) for e in epsilons)], rows)


def _signed_interval(row) -> str:
    """``[low, high]`` of a difference in signed points; empty where one seed gives no interval."""
    return "" if pd.isna(row.ci_low) else f"[{100 * row.ci_low:+.1f}, {100 * row.ci_high:+.1f}]"


def p_value(p: float) -> str:
    """A p-value to two significant digits (``< 0.001`` below that)."""
    return "" if pd.isna(p) else ("< 0.001" if p < 0.001 else f"{p:.2g}")


def difference_text(r, *, seeds: bool = True, holm: bool = True) -> str:
    """A paired difference in prose: ``+7.1 points [+0.0, +14.2] (5 seeds, Holm p = 0.3)``, leaving out the
    seed count or the Holm p-value on request (``r``: a row of :func:`~lalora_lite.study.stats.difference_row`
    plus ``p_holm``)."""
    interval = _signed_interval(r)
    notes = ([f"{r.seeds} seed" + ("" if r.seeds == 1 else "s")] if seeds else []) + (
        [f"Holm p {_equals(p_value(r.p_holm))}"] if holm else []
    )
    return (
        f"{100 * r.difference:+.1f} points"
        + (f" {interval}" if interval else "")
        + (f" ({', '.join(notes)})" if notes else "")
    )


def _equals(p: str) -> str:
    """``= 0.3`` but ``< 0.001`` (not ``= < 0.001``)."""
    return p if p.startswith("<") else f"= {p}"


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


DIFFERENCE_HEADER = [
    "difference (points)",
    "95 % interval",
    "seeds",
    "p (t)",
    "p (Holm)",
    "p (sign flip)",
    "seeds + / -",
    "resolved",
]


def difference_cells(r) -> list:
    """A paired difference's cells under :data:`DIFFERENCE_HEADER` (a row of
    :func:`~lalora_lite.study.stats.difference_row` plus ``p_holm`` and ``resolved``)."""
    return [
        f"{100 * r.difference:+.1f}",
        _signed_interval(r),
        r.seeds,
        p_value(r.p_t),
        p_value(r.p_holm),
        p_value(r.p_sign_flip),
        f"{r.seeds_above} / {r.seeds_below}",
        _yes_no(r.resolved),
    ]


def paired_markdown(paired: pd.DataFrame) -> str:
    """LA-LoRA minus each baseline: difference in points with its paired interval, the t-test's p-value and
    its Holm adjustment over the table, the exact sign-flip p-value, the seeds above and below 0, and the
    verdict (resolved: Holm-adjusted p < 0.05)."""
    need = next(c for c in paired.columns if c.startswith("seeds_for_"))
    header = [
        "epsilon",
        "LA-LoRA minus",
        *DIFFERENCE_HEADER,
        f"seeds for {need.split('_')[-1].removesuffix('pt')} points",
    ]
    rows = [
        [f"{r.epsilon:g}", r.baseline, *difference_cells(r), "" if pd.isna(getattr(r, need)) else int(getattr(r, need))]
        for r in paired.itertuples()
    ]
    return markdown_table(header, rows)


def tuning_gap_markdown(gap: pd.DataFrame) -> str:
    """Public-tuned minus private-tuned final accuracy (:func:`~lalora_lite.study.stats.tuning_gap`), in points."""
    header = ["method", "epsilon", "public minus private (points)", "95 % interval", "seeds", "resolved"]
    rows = [
        [
            r.method,
            eps_label(r.epsilon),
            f"{100 * r.public_minus_private:+.1f}",
            _signed_interval(r),
            r.seeds,
            _yes_no(r.resolved),
        ]
        for r in gap.itertuples()
    ]
    return markdown_table(header, rows)


def chosen_markdown(chosen: pd.DataFrame) -> str:
    """The setting each search chose, with its validation score, cost and grid."""
    header = [
        "method",
        "epsilon",
        "lr",
        "clip",
        "validation score",
        "search runs",
        "lr grid",
        "clip grid",
        "on an edge",
    ]
    rows = [
        [
            r.method,
            eps_label(r.epsilon),
            f"{r.lr:g}",
            f"{r.clip_norm:g}",
            f"{100 * r.score:.1f}",
            r.search_runs,
            r.lr_grid,
            r.clip_grid,
            r.on_edge if isinstance(r.on_edge, str) and r.on_edge else "no",
        ]
        for r in chosen.itertuples()
    ]
    return markdown_table(header, rows)


def tuning_cost(meta: dict, chosen: pd.DataFrame) -> str:
    """What the search tuned on which data, and what that means for the reported epsilon."""
    runs = int(chosen["search_runs"].sum())
    if meta.get("tuned_on") == "public":
        return (
            f"**What the tuning cost in privacy: nothing.** The settings were chosen by {runs} search runs on "
            f"`{meta['search_task']}`, public data that no client holds ({describe_task(meta['search_task'])}); "
            "no private example was read before the final runs, so the reported epsilon is the whole cost. "
            "What this gives up in accuracy is the difference to the same comparison tuned on the private "
            "validation split."
        )
    return (
        f"**What the tuning cost in privacy.** The settings were chosen by {runs} search runs on a "
        f"validation split drawn from the *private* pool, with seed {meta.get('search_seed', 0)}'s client "
        "split (the same clients' data as that seed's final run). Each search run is itself DP at its "
        "budget, but the reported epsilon covers one final run only: the selection is not accounted. "
        "A private selection would compose the runs it chose from (basic composition: up to "
        f"{int(chosen['search_runs'].max()) + 1} x epsilon for the clients of seed "
        f"{meta.get('search_seed', 0)}; random search with a random number of runs costs a small "
        "constant factor, Papernot & Steinke 2022). The other seeds' final runs reuse the chosen "
        "settings on different splits, as a practitioner reusing published settings would; the "
        "numbers here are, like the paper's, tuned-on-private-data results (`lalora compare "
        "--tune-on public` tunes at no privacy cost where a task has public data)."
    )


def write_summary(
    folder: Path,
    runs: pd.DataFrame,
    paired: pd.DataFrame,
    meta: dict,
    chosen: pd.DataFrame | None,
    gap: pd.DataFrame | str | None = None,
) -> Path:
    """``summary.csv``, ``paired.csv`` and ``summary.md`` (tables, readings' raw material, tuning cost,
    and ``gap``, the :func:`~lalora_lite.study.stats.tuning_gap` of public tuning where there is one, or why
    it is not computed: :func:`public_tuning_gap`) from the
    :func:`~lalora_lite.study.stats.run_table` of a results folder."""
    task, profile = folder.parent.name, folder.name
    table = summary(runs)
    table.to_csv(folder / "summary.csv", index=False)
    paired.to_csv(folder / "paired.csv", index=False)
    parts = [
        f"# {task} ({profile} profile)",
        describe_task(task),
        "Final test accuracy (%): mean [95 % t-interval] (n seeds). "
        f"Chance {pct(meta.get('test_chance', math.nan))} %, majority class "
        f"{pct(meta.get('test_majority', math.nan))} %.",
        summary_markdown(table),
    ]
    if set(ABLATION) <= set(table["method"]):
        parts += ["## Ablation", summary_markdown(table, ABLATION)]
    spread = table["last_spread"]
    parts.append(
        f"Stability: the spread (std) of a run's last {LAST_EVALUATIONS} evaluations, averaged per method "
        f"and budget, is {pct(spread.min())}-{pct(spread.max())} points (median {pct(spread.median())})."
    )
    if not paired.empty:
        parts += [
            "## Paired differences (same seeds, same client splits)",
            paired_markdown(paired),
            f"*Resolved*: the t-test's p-value, Holm-adjusted over the {len(paired)} comparisons of this table, is "
            "below 0.05. The sign-flip test is exact and assumes no normality; with "
            f"{int(paired['seeds'].max())} seeds its smallest possible p-value is "
            f"{2 / 2 ** int(paired['seeds'].max()):.4g}, so on its own it cannot resolve a difference at 5 %.",
        ]
    if chosen is not None:
        parts += ["## Chosen settings", chosen_markdown(chosen), tuning_cost(meta, chosen)]
    if gap is not None:
        parts.append("## What tuning on public data gives up")
        parts += (
            [gap]
            if isinstance(gap, str)
            else [  # a string says why the gap is not computed
                "Final test accuracy of this comparison minus that of the same methods, budgets and seeds tuned "
                "on the private validation split (`../" + folder.name.removesuffix(PUBLIC_TUNING) + "`), paired "
                "by seed; 0 where both searches chose the same setting (the same final runs).",
                tuning_gap_markdown(gap),
            ]
        )
    if "wall_s_this_invocation" in meta:
        parts.append(
            f"Wall time of the command that made these results: {meta['wall_s_this_invocation'] / 60:.1f} min "
            f"({meta.get('workers', 1)} worker(s), device {meta.get('device', 'cpu')})."
        )
    path = folder / "summary.md"
    path.write_text("\n\n".join(parts) + "\n")
    return path


def public_tuning_gap(folder: Path, meta: dict, runs: pd.DataFrame) -> pd.DataFrame | str | None:
    """For a ``<profile>+public-tuning`` folder beside its private-tuned twin, the
    :func:`~lalora_lite.study.stats.tuning_gap` of ``runs`` (this folder's :func:`~lalora_lite.study.stats.run_table`)
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
        return (
            f"Not computed: `../{twin.name}` ran with other profile settings ({', '.join(changed)}), so its "
            "final runs do not pair with these; run both comparisons at the same settings."
        )
    return tuning_gap(run_table(pd.read_csv(twin / "history.csv")), runs)


def describe_task(task: str) -> str:
    """The task's description (what it stands in for), or its name for a task no longer registered."""
    return TASKS[task].description if task in TASKS else task
