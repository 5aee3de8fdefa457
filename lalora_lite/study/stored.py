"""Stored comparisons: read one back, say whether it was made with the current settings, or compute it.

A stored comparison (``results/<task>/<profile>/``) is shown without rerunning it, and a reader sees at
once whether it still matches the profile in the code; a missing one is computed (``lalora compare``:
search, then final runs; resumable) when the notebook allows it. :func:`chosen_setting` reads back the
learning rate and clipping norm the comparison's search chose, for the notebooks that reuse them.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pandas as pd

from ..tasks import get_profile
from ..tasks.profiles import default_settings
from .comparison import compare
from .runs import SEARCH_ONLY


def settings_drift(meta: dict, task: str, profile_name: str) -> dict[str, tuple[object, object]]:
    """Profile settings whose stored value (``meta.json``) differs from the current one: name -> (stored, now).

    A run-shaping setting the stored comparison predates is no change when its current value is the
    default (the rule of :func:`~lalora_lite.study.comparison.run_digest`); a search setting it predates
    is (that search did not have it), shown as ``None``."""
    stored = meta.get("profile_settings", {})
    now, defaults = get_profile(task, profile_name).__dict__, default_settings()
    drift = {}
    for name, value in now.items():
        if name in ("epsilons", "seeds", "methods"):  # a compare may run a subset of these on purpose
            continue
        old = stored.get(name)
        same = old == value or (isinstance(value, tuple) and old == list(value))
        predates_at_default = old is None and name not in SEARCH_ONLY and name in defaults and value == defaults[name]
        if not same and not predates_at_default:
            drift[name] = (old, value)
    return drift


def results_or_compare(
    task: str, profile_name: str, results_dir: Path, runs_dir: Path, run_missing: bool, **compare_kwargs: object
) -> tuple[pd.DataFrame, dict, str]:
    """``(history, meta, status)`` of the comparison of ``task`` at ``profile_name``: the stored one if
    there is one, else computed now with :func:`~lalora_lite.study.comparison.compare` when ``run_missing``
    (an error otherwise, naming the command that makes it). ``status`` says which, and lists the
    settings a stored comparison was made with that differ from the current profile."""
    folder = results_dir / task / profile_name
    if not (folder / "history.csv").exists():
        if not run_missing:
            raise ValueError(
                f"no stored comparison in {folder}; make it with: lalora compare --task {task} --profile {profile_name}"
            )
        compare(task, profile_name, runs_dir=runs_dir, results_dir=results_dir, **compare_kwargs)
        status = "computed now"
    else:
        status = "stored"
    meta = json.loads((folder / "meta.json").read_text())
    drift = settings_drift(meta, task, profile_name)
    if drift:
        changes = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in drift.items())
        status += f", made with settings that differ from the current profile: {changes}"
    else:
        status += ", made with the current profile's settings"
    return pd.read_csv(folder / "history.csv"), meta, f"{status} (commit {meta.get('git_commit', '?')[:7]})"


def chosen_setting(
    results_dir: Path,
    task: str,
    profile: str,
    method: str,
    epsilon: float | None,
    fallback: str = "error",
    default: tuple[float, float] | None = None,
) -> tuple[float, float]:
    """``(lr, clip_norm)`` that the stored comparison chose for ``method`` at ``epsilon`` (``None``: no DP).

    Where it chose nothing at that budget (e.g. an exercise at eps = 8), ``fallback`` says what to do:
    ``"error"`` (the default) raises ``ValueError`` naming the budgets it has; ``"nearest"`` takes the
    setting of the nearest budget it tuned (by ratio, the smaller on a tie) and warns which; ``"default"``
    returns ``default``. lr x C is what the search's score depends on, so the nearest budget's setting is a
    reasonable start, not a tuned one."""
    if fallback not in ("error", "nearest", "default"):
        raise ValueError(f"unknown fallback {fallback!r}; allowed: error, nearest, default")
    if fallback == "default" and default is None:
        raise ValueError("fallback='default' needs default=(lr, clip_norm)")
    chosen = pd.read_csv(results_dir / task / profile / "chosen.csv")
    eps = math.inf if epsilon is None else epsilon
    rows = chosen[chosen["method"] == method]
    row = rows[rows["epsilon"] == eps]
    if row.empty:
        budgets = sorted(rows["epsilon"].unique())
        if fallback == "default":
            return default
        if fallback == "error" or not budgets or math.isinf(eps):
            raise ValueError(
                f"no chosen setting for {method!r} at epsilon={epsilon} in {results_dir / task / profile}; "
                f"it tuned {method!r} at epsilon {', '.join(f'{b:g}' for b in budgets) or 'nothing'} "
                "(pass fallback='nearest' or fallback='default', default=(lr, clip_norm))"
            )
        finite = [b for b in budgets if not math.isinf(b)]
        nearest = min(finite, key=lambda b: (abs(math.log(b / eps)), b))
        warnings.warn(
            f"{method!r} was not tuned at epsilon={epsilon:g}: using its setting at epsilon={nearest:g}", stacklevel=2
        )
        row = rows[rows["epsilon"] == nearest]
    return float(row.iloc[0]["lr"]), float(row.iloc[0]["clip_norm"])
