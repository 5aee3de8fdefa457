"""``lalora compare --quick``: the stated re-runs, each checked bit for bit against the stored comparison."""

import math
from pathlib import Path

import pandas as pd
import pytest

from lalora_lite.cli import main
from lalora_lite.study.comparison import compare
from lalora_lite.study.quick import CHECKED, quick, quick_specs

METHODS, EPSILONS, SEEDS = ("fedlora", "lalora"), (3.0,), (0, 1)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A small stored smoke comparison (two methods, one budget, two seeds), as `lalora compare` writes it."""
    root = tmp_path_factory.mktemp("stored")
    compare(
        "fmnist-swin", "smoke", METHODS, EPSILONS, SEEDS, root / "runs", root / "results", progress=False, workers=1
    )
    return root


def test_quick_reruns_are_bit_identical_and_drawn(stored, tmp_path):
    reruns, written = quick(
        "fmnist-swin",
        "smoke",
        METHODS,
        EPSILONS,
        SEEDS,
        tmp_path / "runs",
        stored / "results",
        workers=1,
        progress=False,
    )
    assert [(r.spec.method, r.spec.epsilon, r.spec.seed) for r in reruns] == [
        ("fedlora", None, 0), ("fedlora", None, 1), ("lalora", 3.0, 0), ("lalora", 3.0, 1)
    ]  # fmt: skip
    assert all(r.differing == () for r in reruns)
    chosen = pd.read_csv(stored / "results" / "fmnist-swin" / "smoke" / "chosen.csv")
    lalora = chosen[chosen["method"] == "lalora"].iloc[0]
    assert (reruns[2].spec.lr, reruns[2].spec.clip_norm) == (lalora["lr"], lalora["clip_norm"])  # the chosen setting
    names = {p.name for p in written}
    assert {
        "summary.md",
        "fmnist-swin-smoke-accuracy-vs-epsilon.png",
        "fmnist-swin-smoke-curves-eps3.png",
    } <= names
    assert not (stored / "runs" / "quick").exists()  # the full comparison's runs were not read back


def _tampered(stored, tmp_path, change) -> Path:
    """A copy of the stored comparison whose history ``change`` edited."""
    results = tmp_path / "results"
    folder = results / "fmnist-swin" / "smoke"
    folder.mkdir(parents=True)
    for name in ("chosen.csv", "meta.json"):
        (folder / name).write_bytes((stored / "results" / "fmnist-swin" / "smoke" / name).read_bytes())
    history = pd.read_csv(stored / "results" / "fmnist-swin" / "smoke" / "history.csv")
    change(history)
    history.to_csv(folder / "history.csv", index=False)
    return results


def test_quick_notices_a_run_that_differs(stored, tmp_path):
    """The check can fail: one committed accuracy changed in its last digit is caught, in that column only; the
    re-run still lies inside the committed runs' prediction interval, so it agrees as a new draw would."""

    def one_ulp(history):
        row = history.index[(history["method"] == "lalora") & (history["seed"] == 1) & history["accuracy"].notna()][-1]
        history.loc[row, "accuracy"] = math.nextafter(history.loc[row, "accuracy"], 2.0)

    results = _tampered(stored, tmp_path, one_ulp)
    reruns, _ = quick("fmnist-swin", "smoke", METHODS, EPSILONS, SEEDS, tmp_path / "runs", results, 1, False)
    assert [r.differing for r in reruns] == [(), (), (), ("accuracy",)]
    assert "accuracy" in CHECKED and all(r.agrees for r in reruns)
    assert reruns[3].verdict.startswith("not bit-identical") and "inside" in reruns[3].verdict
    assert not reruns[3].same_accuracy


def test_quick_fails_a_run_outside_the_committed_interval(stored, tmp_path, capsys):
    """Committed LA-LoRA runs that all ended near 99 %: a re-run ending anywhere else is neither identical nor a
    plausible new draw, and the command exits 1."""

    def near_99(history):
        for seed in SEEDS:
            rows = history.index[
                (history["method"] == "lalora") & (history["seed"] == seed) & history["accuracy"].notna()
            ]
            history.loc[rows[-1], "accuracy"] = 0.99 + 0.001 * seed

    results = _tampered(stored, tmp_path, near_99)
    reruns, _ = quick("fmnist-swin", "smoke", METHODS, EPSILONS, SEEDS, tmp_path / "runs", results, 1, False)
    assert [r.agrees for r in reruns] == [True, True, False, False] and "OUTSIDE" in reruns[2].verdict
    args = ["compare", "--task", "fmnist-swin", "--profile", "smoke", "--quick", "--methods", "lalora", "--seeds", "0"]
    with pytest.raises(SystemExit, match="1"):
        main([*args, "--workers", "1", "--runs", str(tmp_path / "runs"), "--results", str(results)])
    assert capsys.readouterr().out.rstrip().endswith("0 of 1 re-runs bit-identical to the committed comparison")


def test_quick_cli_ends_with_the_count_and_fails_on_a_difference(stored, tmp_path, capsys):
    args = ["compare", "--task", "fmnist-swin", "--profile", "smoke", "--quick", "--methods", *METHODS]
    args += ["--seeds", "0", "--workers", "1", "--runs", str(tmp_path / "runs"), "--results", str(stored / "results")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("2 of 2 re-runs bit-identical to the committed comparison")
    assert "| fedlora |" in out and "| lalora |" in out


def test_quick_says_what_is_missing_before_any_work(tmp_path, stored):
    with pytest.raises(
        ValueError, match="holds none .*run the full comparison first: lalora compare --task fmnist-swin"
    ):
        quick("fmnist-swin", "smoke", runs_dir=tmp_path / "runs", results_dir=tmp_path / "nothing")
    chosen = pd.read_csv(stored / "results" / "fmnist-swin" / "smoke" / "chosen.csv")
    with pytest.raises(ValueError, match="chose no setting for dp-lora at epsilon=3"):
        quick_specs("fmnist-swin", "smoke", chosen, ("dp-lora",), (3.0,), (0,))
    assert main(["compare", "--task", "fmnist-swin", "--quick", "--device", "cuda", "--results", str(tmp_path)]) == 2


def test_a_full_comparison_estimates_its_time_from_the_stored_one(stored, tmp_path):
    from lalora_lite.study.runs import measured_eta

    line = measured_eta(stored / "results" / "fmnist-swin" / "smoke", search_runs=10, final_runs=4, workers=2)
    assert line.startswith("estimate: about ") and "h on 2 worker(s)" in line and "per final run" in line
    assert measured_eta(tmp_path / "nothing", 10, 4, 2) is None
