"""Stored comparisons are read back with a status that says whether they match the current profile."""

import json

import pandas as pd
import pytest

from lalora_lite.study.paper import paper_claims
from lalora_lite.study.stored import results_or_compare, settings_drift
from lalora_lite.tasks import get_profile


def stored(folder, profile_settings):
    folder.mkdir(parents=True)
    pd.DataFrame(
        [
            {
                "method": "lalora",
                "epsilon_target": 3.0,
                "seed": 0,
                "round": 1,
                "accuracy": 0.5,
                "upload_bytes": 1,
                "epsilon_spent": 3.0,
            }
        ]
    ).to_csv(folder / "history.csv", index=False)
    (folder / "meta.json").write_text(
        json.dumps({"profile_settings": profile_settings, "git_commit": "abcdef123"}, default=list)
    )


def test_a_stored_comparison_says_which_settings_changed_since(tmp_path):
    current = dict(get_profile("fmnist-swin", "smoke").__dict__)
    stored(tmp_path / "fmnist-swin" / "smoke", current)
    history, meta, status = results_or_compare("fmnist-swin", "smoke", tmp_path, tmp_path / "runs", run_missing=False)
    assert len(history) == 1 and status == "stored, made with the current profile's settings (commit abcdef1)"
    # made with 1 round, before eval_every existed (its current value is the default: not a change)
    older = {k: v for k, v in current.items() if k != "eval_every"} | {"rounds": 1}
    assert settings_drift({"profile_settings": older}, "fmnist-swin", "smoke") == {"rounds": (1, 2)}


def test_a_missing_comparison_is_an_error_naming_the_command(tmp_path):
    with pytest.raises(ValueError, match="lalora compare --task fmnist-swin --profile smoke"):
        results_or_compare("fmnist-swin", "smoke", tmp_path, tmp_path / "runs", run_missing=False)


def test_claims_are_judged_by_the_holm_corrected_test():
    """A claim reproduces (or not) only where its difference is resolved after the Holm correction: an
    interval that excludes 0 is not enough."""
    row = {"ci_low": 0.01, "ci_high": 0.09, "seeds": 5}
    paired = pd.DataFrame(
        [
            {"epsilon": 3.0, "baseline": "dp-lora", "difference": 0.05, **row, "p_holm": 0.01, "resolved": True},
            {"epsilon": 3.0, "baseline": "rolora", "difference": -0.05, "ci_low": -0.09, "ci_high": -0.01,
             "seeds": 5, "p_holm": 0.02, "resolved": True},
            {"epsilon": 1.0, "baseline": "ffa-lora", "difference": 0.01, "ci_low": -0.02, "ci_high": 0.04,
             "seeds": 5, "p_holm": 0.6, "resolved": False},
            {"epsilon": 2.0, "baseline": "dp-lora", "difference": 0.05, **row, "p_holm": 0.12, "resolved": False},
        ]
    )  # fmt: skip
    claims = paper_claims("cifar100-swin-t", paired)
    assert claims["verdict"].tolist() == ["reproduces", "does not reproduce", "unresolved", "unresolved"]
    assert claims["paper"].iloc[0] == "+14.67 points (Swin-T / CIFAR-100, eps=3)"
    assert claims["paper"].iloc[3] == "no row at eps=2"  # never the eps = 3 difference beside an eps = 2 claim
    assert "Holm p = 0.01" in claims["measured"].iloc[0] and "stand-in" not in claims["measured"].iloc[0]
    assert "(stand-in)" in paper_claims("fmnist-swin", paired)["measured"].iloc[0]


def test_chosen_setting_falls_back_to_the_nearest_budget_or_a_default_only_when_asked(tmp_path):
    import warnings

    from lalora_lite.study.stored import chosen_setting

    folder = tmp_path / "t" / "cpu"
    folder.mkdir(parents=True)
    pd.DataFrame(
        {"method": ["lalora", "lalora", "fedlora"], "epsilon": [1.0, 3.0, float("inf")], "lr": [0.1, 0.4, 0.4],
         "clip_norm": [4.0, 2.0, 0.5]}
    ).to_csv(folder / "chosen.csv", index=False)  # fmt: skip
    assert chosen_setting(tmp_path, "t", "cpu", "lalora", 3.0) == (0.4, 2.0)
    with pytest.raises(ValueError, match="at epsilon=8.*it tuned 'lalora' at epsilon 1, 3"):
        chosen_setting(tmp_path, "t", "cpu", "lalora", 8.0)
    with pytest.warns(UserWarning, match="epsilon=3"):
        assert chosen_setting(tmp_path, "t", "cpu", "lalora", 8.0, fallback="nearest") == (0.4, 2.0)
    with pytest.warns(UserWarning, match="epsilon=1"):
        assert chosen_setting(tmp_path, "t", "cpu", "lalora", 0.25, fallback="nearest") == (0.1, 4.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert chosen_setting(tmp_path, "t", "cpu", "lalora", 8.0, fallback="default", default=(0.2, 1.0)) == (0.2, 1.0)
    with pytest.raises(ValueError, match="allowed: error, nearest, default"):
        chosen_setting(tmp_path, "t", "cpu", "lalora", 8.0, fallback="closest")
