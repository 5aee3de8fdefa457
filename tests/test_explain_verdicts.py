"""The explanation study's verdict rules (``lalora_lite.study.explain_analysis``) on made-up runs whose answer
is known: each rule gives *supported*, *not supported* and *inconclusive* where it should."""

import numpy as np
import pandas as pd

from lalora_lite.study.explain import lr_clip, shape_of
from lalora_lite.study.explain_analysis import authors_protocol, budget, dose_response, filter_strength, head_control
from lalora_lite.study.explain_report import verdict_table

SEEDS = range(5)
JITTER = np.array([0.004, -0.003, 0.002, -0.004, 0.001])  # per-seed noise, mean ~0: small intervals


def run(method, accuracy, seed, arm="default", epsilon=1.0, rung=4, **extra):
    return {"method": method, "arm": arm, "epsilon": epsilon, "lr_clip": lr_clip(rung), "seed": seed,
            "accuracy": accuracy, **extra}  # fmt: skip


def curves(levels: dict[str, float], wobble: dict[str, np.ndarray] | None = None) -> list[dict]:
    """Each method's curve over rungs 3, 4, 5 with its best (``levels[method]``) at rung 4, plus a per-seed
    ``wobble`` for some methods (mean 0: it widens their intervals, not their means)."""
    wobble = wobble or {}
    return [
        run(m, top - (0.05 if k != 4 else 0) + JITTER[s] + wobble.get(m, np.zeros(5))[s], s, rung=k)
        for m, top in levels.items()
        for k in (3, 4, 5)
        for s in SEEDS
    ]


def test_h1_head_far_below_lora_is_not_supported_close_is_supported_noisy_is_inconclusive():
    far = pd.DataFrame(curves({"dp-head": 0.60, "dp-lora": 0.70, "lalora": 0.70}))
    close = pd.DataFrame(curves({"dp-head": 0.695, "dp-lora": 0.70, "lalora": 0.70}))
    # within 2 points as a mean, but the interval reaches far below: not evidence that the head is as good
    wide = {"dp-head": np.array([0.10, -0.10, 0.08, -0.08, 0.0])}
    noisy = pd.DataFrame(curves({"dp-head": 0.69, "dp-lora": 0.70, "lalora": 0.70}, wide))
    assert head_control(far)[2].verdict == "not supported"
    assert head_control(close)[2].verdict == "supported"
    assert head_control(noisy)[2].verdict == "inconclusive"
    # the verdict's family is the dp-head comparisons alone: LA-LoRA vs DP-LoRA does not dilute its Holm p
    diffs = head_control(far)[1]
    head = diffs[diffs["comparison"].str.contains("dp-head")]
    assert head["p_holm"].item() == head["p_t"].item()


def protocol(shared_gain: float, own_gain: float) -> pd.DataFrame:
    rows = []
    for setting, gain in (("shared", shared_gain), ("half", 0.0), ("own", own_gain)):
        for s in SEEDS:
            rows.append(run("dp-lora", 0.70 + JITTER[s], s, setting=setting))
            rows.append(run("lalora-authors", 0.70 + gain - JITTER[s], s, setting=setting))
    return pd.DataFrame(rows)


def test_h2_needs_a_shared_gain_that_measurably_vanishes_when_tuned():
    assert authors_protocol(protocol(0.10, 0.0))[2].verdict == "supported"
    assert authors_protocol(protocol(0.10, 0.10))[2].verdict == "not supported"  # the margin survives tuning
    assert authors_protocol(protocol(0.0, 0.0))[2].verdict == "not supported"  # no margin to explain


def test_h3_a_difference_that_grows_with_sigma_is_supported_and_a_flat_one_is_not():
    def dose(slope: float, top: int = 4) -> pd.DataFrame:
        """Curves over rungs 3, 4, 5 with their best at rung ``top`` (4: inside; 5: on the upper edge)."""
        rows = []
        for arm, eps, sigma in (("clip-only", 3.0, 0.0), ("default", 3.0, 1.0), ("default", 1.0, 2.0)):
            for s in SEEDS:
                for k in (3, 4, 5):
                    off = 0.0 if k == top else 0.05
                    for m in ("dp-lora", "ffa-lora"):
                        rows.append(run(m, 0.70 - off + JITTER[s], s, arm, eps, k, sigma_median=sigma))
                    acc = 0.70 + slope * sigma - off + 2 * JITTER[s]
                    rows.append(run("lalora", acc, s, arm, eps, k, sigma_median=sigma))
        return pd.DataFrame(rows)

    best, _, verdict = dose_response(dose(0.05))
    assert verdict.verdict == "supported"
    assert list(best["budget"].unique()) == ["no noise", "eps 3", "eps 1"]  # the noise level's budget, by sigma
    assert best["inside"].all() and "edge" not in verdict.evidence
    assert dose_response(dose(0.0))[2].verdict == "not supported"
    assert "per unit sigma" in dose_response(dose(0.0))[2].evidence
    # a best still on its curve's edge is named in the evidence as a lower bound
    assert "best at a curve's edge (a lower bound): dp-lora at no noise" in dose_response(dose(0.0, top=5))[2].evidence


def test_h4_a_resolved_five_point_cost_without_noise_is_supported_a_small_one_is_not():
    def nodp(cost: float, spread: float = 1.0) -> pd.DataFrame:
        rows = [run("fedlora", 0.85 + JITTER[s], s, setting="no DP") for s in SEEDS]
        rows += [run("lalora-nodp", 0.85 - cost - spread * JITTER[s], s, setting="no DP") for s in SEEDS]
        rows += [run("lalora-nodp", 0.30, s, setting="no DP at 2x lr") for s in SEEDS]  # the worse lr: not the cost
        return pd.DataFrame(rows)

    assert budget(nodp(0.10))[2].verdict == "supported"
    assert budget(nodp(0.01))[2].verdict == "not supported"
    assert budget(nodp(0.04, spread=10))[2].verdict == "inconclusive"  # a 5-point cost is inside the interval


def test_h5_a_width_two_points_better_is_supported_and_none_close_to_it_is_not():
    def widths(gain_9: float) -> pd.DataFrame:
        rows = []
        for setting in ("tuned", "gain-scaled"):
            for s in SEEDS:
                rows.append(run("lalora", 0.65 + JITTER[s], s, setting=setting))
                rows.append(run("lalora", 0.65 + gain_9 - JITTER[s], s, arm="taps9", setting=setting))
        return pd.DataFrame(rows)

    assert filter_strength(widths(0.05))[2].verdict == "supported"
    assert filter_strength(widths(0.0))[2].verdict == "not supported"
    assert filter_strength(widths(0.015))[2].verdict == "inconclusive"  # below 2 points, but 2 not excluded


def test_a_hypothesis_outside_the_tasks_study_is_marked_so_and_one_inside_it_not_run():
    table = verdict_table({}, shape_of("wordnet-minilm", "cpu").experiments).set_index("hypothesis")["verdict"]
    assert table.to_dict() == {
        "H1": "not run",
        "H2": "not in this study",
        "H3": "not in this study",
        "H4": "not run",
        "H5": "not in this study",
    }
    assert set(verdict_table({}, shape_of("fmnist-swin", "cpu").experiments)["verdict"]) == {"not run"}
