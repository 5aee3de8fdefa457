"""Statistics of the comparison against hand-computed references."""

import math

import numpy as np
import pandas as pd
import pytest

from lalora_lite.study.stats import paired_differences, run_table, seeds_needed, summary, t_interval


def test_t_interval_matches_the_textbook_constant():
    x = np.array([0.50, 0.55, 0.60, 0.65, 0.70])  # mean 0.6, sample std 0.0790569
    mean, low, high = t_interval(x)
    half = 2.7764451 * 0.0790569 / math.sqrt(5)  # t_{0.975, 4} from a table
    assert mean == pytest.approx(0.6) and low == pytest.approx(0.6 - half, rel=1e-6)
    assert high == pytest.approx(0.6 + half, rel=1e-6)
    assert all(math.isnan(v) for v in t_interval([0.4])[1:])


def test_seeds_needed_for_a_difference():
    # ((1.959964 + 0.841621) * 0.10 / 0.05)^2 = 31.4 -> 32 seeds
    assert seeds_needed(0.10, 0.05) == 32
    assert seeds_needed(0.02, 0.05) == 2  # clamps at 2
    with pytest.raises(ValueError, match="at least 2 seeds"):
        seeds_needed(math.nan)


def _history(accuracies: dict[tuple[str, float], list[float]]) -> pd.DataFrame:
    rows = []
    for (method, eps), values in accuracies.items():
        for seed, acc in enumerate(values):
            for rnd, a in ((1, math.nan), (2, 0.1), (3, acc)):
                rows.append(
                    {
                        "method": method,
                        "epsilon_target": eps,
                        "seed": seed,
                        "round": rnd,
                        "accuracy": a,
                        "upload_bytes": 100,
                        "epsilon_spent": eps,
                    }
                )
    return pd.DataFrame(rows)


def test_paired_differences_use_the_same_seeds():
    la = [0.60, 0.70, 0.50, 0.65, 0.55]
    dp = [0.55, 0.66, 0.44, 0.61, 0.49]  # LA-LoRA is ahead by 0.04-0.06 in every seed
    history = _history({("lalora", 1.0): la, ("dp-lora", 1.0): dp, ("fedlora", math.inf): [0.8] * 5})
    paired = paired_differences(run_table(history))
    assert len(paired) == 1  # the non-private reference is not paired
    row = paired.iloc[0]
    d = np.subtract(la, dp)
    half = 2.7764451 * d.std(ddof=1) / math.sqrt(5)
    assert row["baseline"] == "dp-lora" and row["difference"] == pytest.approx(d.mean())
    assert row["ci_low"] == pytest.approx(d.mean() - half) and row["resolved"]
    # unpaired, the same numbers would not be resolved: the seeds' spread (0.08) dwarfs the gap
    _, low, _ = t_interval(np.array(la) - np.mean(dp))
    assert low < 0
    assert row["seeds_for_5pt"] == 2


def test_run_table_and_summary_read_the_last_round_and_the_spread():
    history = _history({("lalora", 1.0): [0.6, 0.8]})
    runs = run_table(history)
    assert runs["accuracy"].tolist() == [0.6, 0.8]
    assert runs["last_spread"].tolist() == pytest.approx([np.std([0.1, 0.6], ddof=1), np.std([0.1, 0.8], ddof=1)])
    assert (runs["upload_bytes"] == 300).all()
    table = summary(runs)
    assert table.iloc[0]["seeds"] == 2 and table.iloc[0]["mean"] == pytest.approx(0.7)


def test_holm_matches_the_textbook_step_down_and_keeps_nans():
    from lalora_lite.study.stats import holm

    # Holm (1979) by hand: sorted 0.01, 0.02, 0.03, 0.5 -> 4*0.01, 3*0.02, max(0.06, 2*0.03), 1*0.5
    assert np.allclose(holm([0.03, 0.01, 0.5, 0.02]), [0.06, 0.04, 0.5, 0.06])
    adjusted = holm([0.2, float("nan"), 0.4])
    assert np.isnan(adjusted[1]) and np.allclose([adjusted[0], adjusted[2]], [0.4, 0.4])
    assert holm([0.9, 0.8]) == [1.0, 1.0]  # 2 * 0.8 capped at 1, and monotone: max(1, 0.9)


def test_sign_flip_p_is_the_exact_permutation_test():
    from scipy.stats import permutation_test

    from lalora_lite.study.stats import sign_flip_p

    rng = np.random.default_rng(0)
    for n in (3, 5, 7):
        d = rng.normal(0.02, 0.03, n)
        reference = permutation_test(
            (d,), np.mean, permutation_type="samples", n_resamples=np.inf, alternative="two-sided"
        ).pvalue
        assert abs(sign_flip_p(d) - reference) < 1e-9
    assert sign_flip_p([0.1, 0.2, 0.3, 0.4, 0.5]) == 2 / 32  # 5 seeds of one sign: the smallest possible
    assert sign_flip_p([0.1, -0.1]) == 1.0


def test_paired_differences_report_holm_and_resolve_only_after_the_correction():
    from lalora_lite.study.stats import holm, paired_differences

    rows = []
    for seed, (la, a, b) in enumerate([(0.70, 0.60, 0.69), (0.72, 0.61, 0.71), (0.69, 0.60, 0.70), (0.71, 0.62, 0.70)]):
        rows += [
            {"method": "lalora", "epsilon_target": 1.0, "seed": seed, "accuracy": la},
            {"method": "dp-lora", "epsilon_target": 1.0, "seed": seed, "accuracy": a},
            {"method": "ffa-lora", "epsilon_target": 1.0, "seed": seed, "accuracy": b},
        ]
    table = paired_differences(pd.DataFrame(rows))
    assert list(table["p_holm"]) == holm(list(table["p_t"]))
    assert list(table["resolved"]) == [p < 0.05 for p in table["p_holm"]]
    assert table.set_index("baseline").loc["dp-lora", "resolved"]  # +9.5 points on every seed
    assert not table.set_index("baseline").loc["ffa-lora", "resolved"]
    assert table.set_index("baseline").loc["dp-lora", "seeds_above"] == 4


def test_difference_text_writes_points_interval_seeds_and_holm():
    from types import SimpleNamespace

    from lalora_lite.study.tables import difference_text

    r = SimpleNamespace(difference=0.071, ci_low=0.0004, ci_high=0.142, seeds=np.int64(5), p_holm=0.31)
    assert difference_text(r) == "+7.1 points [+0.0, +14.2] (5 seeds, Holm p = 0.31)"
    assert difference_text(r, seeds=False) == "+7.1 points [+0.0, +14.2] (Holm p = 0.31)"
    assert difference_text(r, seeds=False, holm=False) == "+7.1 points [+0.0, +14.2]"
    one = SimpleNamespace(difference=-0.02, ci_low=math.nan, ci_high=math.nan, seeds=np.int64(1), p_holm=math.nan)
    assert difference_text(one, holm=False) == "-2.0 points (1 seed)"
    tiny = SimpleNamespace(difference=-0.008, ci_low=-0.008, ci_high=-0.008, seeds=np.int64(3), p_holm=1e-9)
    assert difference_text(tiny) == "-0.8 points [-0.8, -0.8] (3 seeds, Holm p < 0.001)"
