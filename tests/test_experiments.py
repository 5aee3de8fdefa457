"""The main job end to end at the smoke profile: search, final runs, tidy results, figures, resume."""

import dataclasses
import json
import math

import pandas as pd
import pytest

from lalora_lite import experiments
from lalora_lite.experiments import RunSpec, choose, compare
from lalora_lite.methods import METHODS
from lalora_lite.plotting import redraw, summary, summary_markdown


@pytest.mark.parametrize("task", ["fmnist-swin", "wordnet-minilm"])
def test_compare_smoke_writes_tidy_results_and_resumes(task, tmp_path, monkeypatch):
    runs, results, figures = tmp_path / "runs", tmp_path / "results", tmp_path / "figures"
    history = compare(task, "smoke", runs_dir=runs, results_dir=results, progress=False)
    out = results / task / "smoke"
    stored = pd.read_csv(out / "history.csv")
    assert set(stored["method"]) == set(METHODS)
    # one row per task/method/epsilon/seed/round
    assert not stored.duplicated(["task", "method", "epsilon_target", "seed", "round"]).any()
    assert len(stored) == 7 * 2  # 7 methods x 1 budget x 1 seed x 2 rounds
    assert math.isinf(stored.loc[stored["method"] == "fedlora", "epsilon_target"].iloc[0])
    private = stored[stored["method"] != "fedlora"]
    assert (private["epsilon_spent"] <= 3.0).all() and (private["epsilon_spent"] > 0).all()
    meta = json.loads((out / "meta.json").read_text())
    assert set(meta["chosen"]) == set(METHODS) and meta["versions"]["torch"]
    search = pd.read_csv(out / "search.csv")
    assert (search["split"] == "val").all() and (stored["split"] == "test").all()

    written = redraw(results, figures)
    assert (figures / f"{task}-smoke-accuracy-vs-epsilon.png").stat().st_size > 10_000
    assert (out / "summary.md").read_text().count("\n| ") >= 7 and "## Ablation" in (out / "summary.md").read_text()
    assert len(written) == 3

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was recomputed")

    monkeypatch.setattr(experiments, "run_federated", no_training)
    again = compare(task, "smoke", runs_dir=runs, results_dir=results, progress=False)
    assert again["accuracy"].tolist() == history["accuracy"].tolist()


def test_choose_takes_best_final_validation_accuracy_per_method():
    rows = []
    for lr, clip, final in ((0.1, 1.0, 0.5), (0.2, 1.0, 0.7), (0.2, 2.0, 0.7), (0.4, 1.0, 0.6)):
        rows += [{"method": "lalora", "lr": lr, "clip_norm": clip, "round": 1, "accuracy": 0.9},
                 {"method": "lalora", "lr": lr, "clip_norm": clip, "round": 2, "accuracy": final}]
    assert choose(pd.DataFrame(rows)) == {"lalora": (0.2, 1.0)}  # final round counts; ties: grid order


def test_run_ids_are_unique_per_setting():
    base = RunSpec("fmnist-swin", "cpu", "lalora", 1.0, 0, 0.1, 1.0, 20, "test")
    changes = [{}, {"method": "fedlora", "epsilon": None}, {"epsilon": 2.0}, {"seed": 1}, {"lr": 0.2},
               {"clip_norm": 0.5}, {"rounds": 10}, {"split": "val"}]  # task and profile name the folder
    variants = [dataclasses.replace(base, **change) for change in changes]
    assert len({v.run_id for v in variants}) == len(variants)


def test_summary_table_mean_and_std():
    rows = [{"method": "lalora", "epsilon_target": 1.0, "seed": s, "round": r, "accuracy": acc}
            for s, acc in ((0, 0.5), (1, 0.7)) for r in (1, 2)]
    table = summary(pd.DataFrame(rows))
    assert table.iloc[0]["mean"] == pytest.approx(0.6) and table.iloc[0]["std"] == pytest.approx(0.141421, rel=1e-4)
    assert "60.00 +- 14.14 (n=2)" in summary_markdown(table)


def test_bad_compare_inputs_fail_before_work(tmp_path, monkeypatch):
    monkeypatch.setattr(experiments, "run_federated", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(ValueError, match="unknown method"):
        compare("fmnist-swin", "smoke", methods=("lora",), runs_dir=tmp_path, results_dir=tmp_path)
    with pytest.raises(ValueError, match="epsilon must be"):
        compare("fmnist-swin", "smoke", epsilons=(0.0,), runs_dir=tmp_path, results_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown task"):
        compare("mnist", "smoke", runs_dir=tmp_path, results_dir=tmp_path)
