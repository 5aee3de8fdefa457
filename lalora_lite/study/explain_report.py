"""The explanation study's report: ``summary.md`` (verdicts, per-hypothesis tables and paired differences, wall
time) and ``verdicts.csv`` in ``results/explain/<task>/<profile>/``, and the figures (:mod:`.explain_plots`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .explain import EXPERIMENTS, shape_of
from .explain_analysis import (
    EXPERIMENT_OF,
    HYPOTHESES,
    MARGIN,
    WORKERS,
    Verdict,
    analyse,
    chosen_path,
    load,
    tuning_check,
)
from .tables import DIFFERENCE_HEADER, difference_cells, markdown_table


def verdict_table(
    results: dict[str, tuple[pd.DataFrame, pd.DataFrame, Verdict]], experiments: tuple[str, ...] = EXPERIMENTS
) -> pd.DataFrame:
    """One row per hypothesis: what it says, the verdict, the evidence. Without data: ``not run`` where its
    experiment is one of the task's study's ``experiments``, else ``not in this study`` (by design)."""
    rows = []
    for key, text in HYPOTHESES.items():
        missing = "not run" if EXPERIMENT_OF[key] in experiments else "not in this study"
        v = results[key][2] if key in results else Verdict(key, missing, "")
        rows.append({"hypothesis": key, "claim": text, "verdict": v.verdict, "evidence": v.evidence})
    return pd.DataFrame(rows)


def wall_hours(data: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per experiment in the study's tables ``data``: distinct runs, their summed single-thread run time, and that
    time on :data:`WORKERS` workers (a run several experiments share is counted in the first that made it)."""
    seen, rows = set(), []
    for experiment in EXPERIMENTS:
        if experiment not in data:
            continue
        runs = data[experiment].drop_duplicates(["method", "arm", "epsilon", "lr", "seed", "split", "rounds"])
        key = list(
            zip(runs["method"], runs["arm"], runs["epsilon"], runs["lr"], runs["seed"], runs["split"], runs["rounds"])
        )
        new = [k not in seen for k in key]
        seen |= set(key)
        seconds = float(runs["run_s"][new].sum())
        rows.append(
            {
                "experiment": experiment,
                "runs": int(sum(new)),
                "run_hours": seconds / 3600,
                f"hours_on_{WORKERS}_workers": seconds / 3600 / WORKERS,
            }
        )
    return pd.DataFrame(rows)


def _diff_markdown(diffs: pd.DataFrame) -> str:
    rows = [[r.comparison, *difference_cells(r)] for r in diffs.itertuples()]
    header = ["comparison", *DIFFERENCE_HEADER]
    return markdown_table(header, rows)


def _table_markdown(table: pd.DataFrame) -> str:
    shown = table.copy()
    for c in ("mean", "ci_low", "ci_high", "at_chosen", "best", "lost", "drop_one_rung_up"):
        if c in shown:
            shown[c] = (100 * shown[c]).round(1)
    for c in ("lr_clip", "gain", "chosen_lr_clip", "nearest_rung", "best_lr_clip"):
        if c in shown:
            shown[c] = shown[c].map(lambda v: f"{v:.3g}")
    for c in (c for c in shown.columns if "hours" in c):
        shown[c] = shown[c].round(2)
    return markdown_table(list(shown.columns), shown.astype(object).where(shown.notna(), "").values.tolist())


def tuning_markdown(folder: Path, data: dict[str, pd.DataFrame]) -> list[str]:
    """The tuning check's section (H1's curves in ``data``, the study's loaded tables, against the comparison's
    picks); empty without either."""
    if "head-control" not in data or not chosen_path(folder).exists():
        return []
    check, verdict = tuning_check(data["head-control"], pd.read_csv(chosen_path(folder)))
    if check.empty:
        return []
    keep = (
        "the comparison's protocol is kept"
        if verdict.verdict == "not a lottery"
        else "the comparison needs a finer search"
    )
    return [
        "## Was the comparison's tuning a lottery?",
        f"The comparison picked each setting on one seed's validation split from a factor-2 grid; H1's curves "
        f"(sqrt(2) rungs, 3 seeds) say what that pick cost. A lottery: a pick {100 * MARGIN:.0f} or more points "
        f"below the curve's best. **{verdict.verdict.capitalize()}** ({keep}): {verdict.evidence}.",
        _table_markdown(check),
    ]


def summary_markdown(folder: Path, data: dict[str, pd.DataFrame], results: dict, verdicts: pd.DataFrame) -> str:
    """``summary.md`` for the study in ``folder`` from its tables ``data``, their analysis ``results`` and its
    :func:`verdict_table`: the verdicts, then per hypothesis its table and paired differences, and the wall time."""
    parts = [
        f"# The explanation study: {folder.parent.name} [{folder.name}]",
        "Made by `lalora explain` (`lalora_lite/study/explain.py`; the design is `docs/explain.md`). Accuracies "
        "in percent; differences in points, paired by seed, with 95 % t-intervals, the t-test's p-value, its Holm "
        "adjustment within its family (the comparisons a verdict rests on form one family, listed first; the "
        "descriptive ones beside them another) and the exact sign-flip p-value (with 3 seeds its smallest possible "
        "value is 0.25, with 5 seeds 0.0625). *Resolved*: Holm-adjusted p < 0.05. The verdict rules are "
        "`docs/explain.md`'s table.",
        "## Verdicts",
        markdown_table(
            ["hypothesis", "claim", "verdict"],
            verdicts[["hypothesis", "claim", "verdict"]].values.tolist(),
        ),
    ]
    for key, (table, diffs, verdict) in results.items():
        parts += [f"## {key}: {HYPOTHESES[key]}", f"**Verdict: {verdict.verdict}.** {verdict.evidence}"]
        parts += [_table_markdown(table)] if not table.empty else []
        parts += [_diff_markdown(diffs)] if not diffs.empty else []
        parts += tuning_markdown(folder, data) if key == "H1" else []
    parts += [
        "## Wall time",
        "Summed single-thread run time of each experiment's own runs (a run two experiments "
        f"share counts once) and that time on {WORKERS} workers:",
        _table_markdown(wall_hours(data)),
    ]
    return "\n\n".join(parts) + "\n"


def write_report(folder: Path, figures: Path) -> list[Path]:
    """``summary.md`` and ``verdicts.csv`` in ``folder`` and the figures (:mod:`.explain_plots`); the paths."""
    from .explain_plots import plot_study

    data = load(folder)
    if not data:
        return []
    results = analyse(data)
    verdicts = verdict_table(results, shape_of(folder.parent.name, folder.name).experiments)
    (folder / "summary.md").write_text(summary_markdown(folder, data, results, verdicts))
    verdicts.to_csv(folder / "verdicts.csv", index=False)
    return [folder / "summary.md", folder / "verdicts.csv", *plot_study(folder, figures, data, results)]
