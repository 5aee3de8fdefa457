"""Statistics of a comparison: final accuracies, t-intervals, paired differences, seeds needed.

For ``n`` seeds with accuracies ``x_1..x_n`` (mean ``m``, sample std ``s``) the 95 % interval is
``m +- t_{0.975, n-1} s / sqrt(n)``. Two methods run with the same seeds share each seed's client
split, initialisation and client sampling, so their difference is measured per seed,
``d_i = x_i(LA-LoRA) - x_i(baseline)``, and gets the same interval (a paired t-interval); it is
*resolved* when that interval excludes 0. The seeds a difference ``delta`` would need at the
measured spread ``s_d`` (two-sided 5 % test, 80 % power, normal approximation) are
``n = ceil(((z_{0.975} + z_{0.8}) s_d / delta)^2)``.

Many comparisons. Beside the t-test's p-value every paired difference gets the exact sign-flip
permutation test (:func:`sign_flip_p`: under "no difference" each seed's difference is as likely
negative as positive, so the ``2^n`` sign patterns are equally likely; with 5 seeds its smallest
two-sided p-value is ``2 / 32 = 0.0625``, so no rank or sign test can resolve anything at 5 % with 5
seeds), and the p-values of one table are Holm-adjusted together (:func:`holm`). A difference is
*resolved* when its Holm-adjusted t-test p-value is below 0.05.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as st

RUN_KEYS = ["method", "epsilon_target", "seed"]
LAST_EVALUATIONS = 3  # the stability of a run: spread of its last evaluations


def t_interval(values: np.ndarray | pd.Series, level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``; with one value the interval is ``(nan, nan)``."""
    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = float(st.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def prediction_interval(values: np.ndarray | pd.Series, level: float = 0.95) -> tuple[float, float]:
    """Where one more draw from the distribution of ``values`` falls with probability ``level``:
    ``mean +- t_{n-1} sd sqrt(1 + 1/n)`` (wider than the mean's interval, which says where the *mean* is)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return math.nan, math.nan
    half = float(st.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) * math.sqrt(1 + 1 / len(x)))
    return float(x.mean()) - half, float(x.mean()) + half


def t_test_p(differences: np.ndarray | pd.Series) -> float:
    """Two-sided p-value of the one-sample t-test of mean 0 (``nan`` with fewer than 2 values; 0 or 1
    when every difference is equal)."""
    d = np.asarray(differences, dtype=float)
    if len(d) < 2:
        return math.nan
    if d.std(ddof=1) == 0:
        return 1.0 if d.mean() == 0 else 0.0
    return float(st.ttest_1samp(d, 0.0).pvalue)


def sign_flip_p(differences: np.ndarray | pd.Series) -> float:
    """Exact two-sided permutation p-value of the mean of paired differences: the share of the ``2^n``
    sign patterns whose ``|mean|`` is at least the observed one (``n <= 20``)."""
    d = np.asarray(differences, dtype=float)
    if len(d) == 0 or len(d) > 20:
        return math.nan
    signs = 1 - 2 * ((np.arange(2 ** len(d))[:, None] >> np.arange(len(d))) & 1)  # (2^n, n) of +-1
    means = np.abs(signs @ d) / len(d)
    return float(np.mean(means >= abs(d.mean()) - 1e-12))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of ``p_values`` (``nan`` stays ``nan`` and is not counted): the i-th
    smallest of m becomes ``max_{j <= i} min(1, (m - j + 1) p_(j))``."""
    p = np.asarray(p_values, dtype=float)
    valid = np.flatnonzero(~np.isnan(p))
    adjusted = np.full(len(p), math.nan)
    running = 0.0
    for rank, i in enumerate(valid[np.argsort(p[valid], kind="stable")]):
        running = max(running, min(1.0, (len(valid) - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def seeds_needed(spread: float, delta: float = 0.05, level: float = 0.95, power: float = 0.8) -> int:
    """Seeds that resolve a paired difference ``delta`` at per-seed spread ``spread`` (see module doc)."""
    if math.isnan(spread):
        raise ValueError("the spread of a single paired difference is unknown; run at least 2 seeds")
    if spread == 0:
        return 2
    z = st.norm.ppf(0.5 + level / 2) + st.norm.ppf(power)
    return max(2, math.ceil((z * spread / delta) ** 2))


def final_rows(history: pd.DataFrame) -> pd.DataFrame:
    """The last round of every run."""
    last = history.groupby(RUN_KEYS)["round"].transform("max")
    return history[history["round"] == last]


def run_table(history: pd.DataFrame) -> pd.DataFrame:
    """One row per run: final accuracy, the spread (std) of its last evaluations, total upload bytes."""
    evaluated = history.dropna(subset=["accuracy"]).sort_values("round")
    spread = evaluated.groupby(RUN_KEYS, sort=False)["accuracy"].apply(lambda a: a.tail(LAST_EVALUATIONS).std(ddof=1))
    final = final_rows(history).set_index(RUN_KEYS)
    upload = history.groupby(RUN_KEYS, sort=False)["upload_bytes"].sum()
    table = pd.DataFrame(
        {
            "accuracy": final["accuracy"],
            "last_spread": spread.reindex(final.index),
            "upload_bytes": upload.reindex(final.index),
            "epsilon_spent": final["epsilon_spent"],
        }
    )
    return table.reset_index()  # runs in the order they appear in ``history``


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Final test accuracy per method and epsilon from a :func:`run_table`: mean, 95 % t-interval,
    std, seeds, and the mean spread of the runs' last evaluations (how stable a final accuracy is)."""
    rows = []
    for (method, eps), group in runs.groupby(["method", "epsilon_target"], sort=False):
        mean, low, high = t_interval(group["accuracy"])
        rows.append(
            {
                "method": method,
                "epsilon": eps,
                "mean": mean,
                "ci_low": low,
                "ci_high": high,
                "std": group["accuracy"].std(ddof=1),
                "seeds": len(group),
                "last_spread": group["last_spread"].mean(),
            }
        )
    return pd.DataFrame(rows)


def paired_differences(runs: pd.DataFrame, reference: str = "lalora", delta: float = 0.05) -> pd.DataFrame:
    """``reference`` minus every other private method, per epsilon, over the seeds both ran (from a
    :func:`run_table`): mean difference, 95 % paired t-interval, the t-test's p-value, its Holm
    adjustment over the table's rows, the exact sign-flip p-value, the seeds of each sign, whether it
    is resolved after the correction, and the seeds ``delta`` would need."""
    wide = runs.pivot_table(index=["epsilon_target", "seed"], columns="method", values="accuracy")
    if reference not in wide:
        return pd.DataFrame()
    rows = []
    for eps, table in wide.groupby(level="epsilon_target"):
        if math.isinf(eps):
            continue
        for baseline in (c for c in table.columns if c != reference):
            d = (table[reference] - table[baseline]).dropna()
            if d.empty:
                continue
            spread = float(d.std(ddof=1)) if len(d) > 1 else math.nan
            rows.append(
                {"epsilon": eps, "baseline": baseline}
                | difference_row(d)
                | {f"seeds_for_{round(100 * delta)}pt": seeds_needed(spread, delta) if len(d) > 1 else None}
            )
    return with_holm(pd.DataFrame(rows))


def difference_row(d: pd.Series) -> dict[str, float | int]:
    """The columns every paired table gives a difference ``d`` (one value per seed): its mean and 95 %
    t-interval, the seeds, the t-test's and the exact sign-flip p-values, and the seeds of each sign."""
    mean, low, high = t_interval(d)
    return {
        "difference": mean,
        "ci_low": low,
        "ci_high": high,
        "seeds": len(d),
        "p_t": t_test_p(d),
        "p_sign_flip": sign_flip_p(d),
        "seeds_above": int((d > 0).sum()),
        "seeds_below": int((d < 0).sum()),
    }


def with_holm(table: pd.DataFrame, p_column: str = "p_t") -> pd.DataFrame:
    """``table`` with ``p_holm`` (:func:`holm` over all its rows' ``p_column``) and ``resolved`` (the
    adjusted p-value below 0.05), both placed after ``p_column``."""
    if table.empty:
        return table
    table = table.copy()
    at = table.columns.get_loc(p_column) + 1
    table.insert(at, "p_holm", holm(table[p_column].tolist()))
    table.insert(at + 1, "resolved", table["p_holm"] < 0.05)
    return table


PUBLIC_TUNING = "+public-tuning"  # results/<task>/<profile>+public-tuning/: tuned on public data


def tuning_gap(private: pd.DataFrame, public: pd.DataFrame) -> pd.DataFrame:
    """What tuning on public data gives up: per method and epsilon, the final accuracy of the comparison
    tuned on public data minus the one tuned on the private validation split, paired by seed (the same
    client splits; two :func:`run_table` s). Negative: public tuning costs accuracy. ``resolved``: after the
    Holm correction over the table (:func:`with_holm`)."""
    keys = ["method", "epsilon_target", "seed"]
    both = private.merge(public, on=keys, suffixes=("_private", "_public"))
    rows = []
    for (method, eps), group in both.groupby(["method", "epsilon_target"], sort=False):
        d = group["accuracy_public"] - group["accuracy_private"]
        mean, low, high = t_interval(d)
        rows.append(
            {
                "method": method,
                "epsilon": eps,
                "public_minus_private": mean,
                "ci_low": low,
                "ci_high": high,
                "seeds": len(d),
                "p_t": t_test_p(d),
                "p_sign_flip": sign_flip_p(d),
            }
        )
    return with_holm(pd.DataFrame(rows))
