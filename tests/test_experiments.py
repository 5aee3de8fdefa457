"""The main job end to end at the smoke profile: search, final runs, tidy results, figures, resume."""

import dataclasses
import json
import math

import pandas as pd
import pytest

from lalora_lite.study import runs as run_module
from lalora_lite.study.comparison import compare
from lalora_lite.study.plotting import draw_folder, redraw
from lalora_lite.study.runs import Runner, RunSpec, run_digest
from lalora_lite.study.stats import paired_differences, run_table, summary, tuning_gap
from lalora_lite.study.stored import chosen_setting
from lalora_lite.study.tables import paired_markdown, summary_markdown, tuning_gap_markdown
from lalora_lite.tasks import get_profile
from lalora_lite.tasks.profiles import ALL_METHODS as METHODS  # what a comparison runs by default


@pytest.mark.parametrize("task", ["fmnist-swin", "wordnet-minilm"])
def test_compare_smoke_writes_tidy_results_and_resumes(task, tmp_path, monkeypatch):
    runs, results, figures = tmp_path / "runs", tmp_path / "results", tmp_path / "figures"
    history = compare(task, "smoke", runs_dir=runs, results_dir=results, progress=False, workers=1)
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
    lr = get_profile(task, "smoke").lr_grid[0]
    assert meta["chosen"]["lalora"]["3"] == {"lr": lr, "clip_norm": 1.0} and "none" in meta["chosen"]["fedlora"]
    assert set(meta["profile_s"]["final"]) == {"runs", "build_s", "setup_s", "train_s", "eval_s"}
    assert meta["profile_s"]["final"]["runs"] == 7 and meta["profile_s"]["final"]["train_s"] > 0
    assert 0 < meta["test_chance"] <= meta["test_majority"] < 1
    assert meta["cpu_kernels"]["ATEN_CPU_CAPABILITY"] == "avx2" and meta["cpu_kernels"]["capability"] != "AVX512"
    search = pd.read_csv(out / "search.csv")
    assert (search["split"] == "val").all() and (stored["split"] == "test").all()
    chosen = pd.read_csv(out / "chosen.csv")
    assert len(chosen) == 7 and (chosen["search_runs"] == 1).all()  # smoke: a 1 x 1 grid, nothing to widen
    assert chosen_setting(results, task, "smoke", "lalora", 3.0) == (lr, 1.0)
    with pytest.raises(ValueError, match="no chosen setting"):
        chosen_setting(results, task, "smoke", "lalora", 1.0)

    written = redraw(results, figures)
    assert (figures / f"{task}-smoke-accuracy-vs-epsilon.png").stat().st_size > 10_000
    text = (out / "summary.md").read_text()
    assert text.count("\n| ") >= 7 and "## Ablation" in text and "What the tuning cost in privacy" in text
    assert "## Paired differences" in text and (out / "paired.csv").exists()
    names = {p.name for p in written}
    assert {
        f"{task}-smoke-{kind}.png"
        for kind in ("accuracy-vs-epsilon", "paired-differences", "accuracy-vs-upload", "curves-eps3")
    } < names

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was recomputed")

    monkeypatch.setattr(run_module, "run_federated", no_training)
    again = compare(task, "smoke", runs_dir=runs, results_dir=results, progress=False, workers=1)
    assert again["accuracy"].tolist() == history["accuracy"].tolist()


def test_parallel_workers_give_bit_identical_runs(tmp_path):
    """Two worker processes and one in-process runner produce the same histories (one thread per run)."""
    specs = [
        RunSpec("fmnist-swin", "smoke", m, eps, seed, 0.1, 1.0, 2, "test")
        for m, eps in (("lalora", 3.0), ("fedlora", None))
        for seed in (0, 1)
    ]
    with Runner(tmp_path / "a", workers=2, progress=False) as runner:
        parallel = runner.run(specs)
    with Runner(tmp_path / "b", workers=1, progress=False) as runner:
        serial = runner.run(specs)
    for p, s in zip(parallel, serial):
        assert p["method"].iloc[0] == s["method"].iloc[0] and p["seed"].iloc[0] == s["seed"].iloc[0]
        for column in ("accuracy", "loss", "train_loss", "epsilon_spent", "upload_bytes"):
            assert p[column].tolist() == s[column].tolist()


def test_runner_executes_grouped_by_seed_and_returns_in_the_given_order(tmp_path, monkeypatch):
    """Five seeds cycled method by method would rebuild the task for every run (the cache holds 4):
    the runner executes one seed's runs together and hands the histories back in the caller's order."""
    executed = []

    def record(spec, runs_dir, device):
        executed.append((spec.method, spec.seed))
        return pd.DataFrame({"method": [spec.method], "seed": [spec.seed]})

    monkeypatch.setattr(run_module, "_execute_quietly", record)
    specs = [
        RunSpec("fmnist-swin", "smoke", m, 1.0, seed, 0.1, 1.0, 2, "test")
        for m in ("dp-lora", "lalora", "rolora")
        for seed in range(5)
    ]
    assert run_module.cached_task.cache_info().maxsize < 5
    with Runner(tmp_path, workers=1, progress=False) as runner:
        histories = runner.run(specs)
    assert executed == [(m, seed) for seed in range(5) for m in ("dp-lora", "lalora", "rolora")]
    assert [(h["method"].item(), h["seed"].item()) for h in histories] == [(s.method, s.seed) for s in specs]


def test_run_digest_names_every_setting_that_shapes_a_run():
    profile = get_profile("fmnist-swin", "cpu")
    assert run_digest(profile) == run_digest(dataclasses.replace(profile, seeds=(7,), lr_grid=(1.0, 2.0)))
    for change in (
        {"rounds": 3},
        {"local_steps": 2},
        {"lr_schedule": "constant"},
        {"eval_every": 1},
        {"count_steps": "every-round"},
        {"dirichlet_alpha": 0.5},
        {"batch_size": 8},
        {"frozen_layers": 4},
    ):
        assert run_digest(dataclasses.replace(profile, **change)) != run_digest(profile), change
    # a setting at its declared default is left out, so adding a setting does not rename stored runs
    assert run_digest(dataclasses.replace(profile, frozen_layers=0)) == run_digest(profile)


def test_run_ids_are_unique_per_setting():
    base = RunSpec("fmnist-swin", "cpu", "lalora", 1.0, 0, 0.1, 1.0, 20, "test")
    changes = [
        {},
        {"method": "fedlora", "epsilon": None},
        {"epsilon": 2.0},
        {"seed": 1},
        {"lr": 0.2},
        {"clip_norm": 0.5},
        {"rounds": 10},
        {"split": "val"},
    ]  # task and profile name the folder
    variants = [dataclasses.replace(base, **change) for change in changes]
    assert len({v.run_id for v in variants}) == len(variants)


def test_summary_table_mean_and_interval():
    rows = [
        {
            "method": "lalora",
            "epsilon_target": 1.0,
            "seed": s,
            "round": r,
            "accuracy": acc,
            "upload_bytes": 10,
            "epsilon_spent": 1.0,
        }
        for s, acc in ((0, 0.5), (1, 0.7))
        for r in (1, 2)
    ]
    table = summary(run_table(pd.DataFrame(rows)))
    assert table.iloc[0]["mean"] == pytest.approx(0.6) and table.iloc[0]["std"] == pytest.approx(0.141421, rel=1e-4)
    # t_{0.975, 1} = 12.706: half-width 12.706 * 0.1414 / sqrt(2) = 1.2706
    assert table.iloc[0]["ci_high"] == pytest.approx(0.6 + 1.27062, rel=1e-4)
    assert "60.0 [-67.1, 187.1] (n=2)" in summary_markdown(table)


def test_paired_markdown_gives_an_interval_from_two_seeds_and_none_from_one():
    runs = pd.DataFrame(
        {
            "method": ["lalora", "dp-lora"] * 3,
            "epsilon_target": [1.0] * 4 + [3.0] * 2,
            "seed": [0, 0, 1, 1, 0, 0],
            "accuracy": [0.6, 0.5, 0.7, 0.5, 0.6, 0.55],
        }
    )
    text = paired_markdown(paired_differences(runs))
    # eps 1: differences 0.1 and 0.2, mean 0.15, half-width 12.706 * 0.0707 / sqrt(2) = 0.635
    # t = 0.15 / (0.0707 / sqrt(2)) = 3.0 on 1 df: p = 0.205 (Holm over the one row with a p-value: the same);
    # the sign-flip test on two positive differences: 2 of 4 patterns are as extreme, p = 0.5
    assert "| 1 | dp-lora | +15.0 | [-48.5, +78.5] | 2 | 0.2 | 0.2 | 0.5 | 2 / 0 | no |" in text
    assert "| 3 | dp-lora | +5.0 |  | 1 |  |  | 1 | 1 / 0 | no |  |" in text and "nan" not in text


def test_tuning_gap_pairs_by_seed_and_its_table_gives_points_with_the_interval():
    private = pd.DataFrame(
        {
            "method": ["lalora"] * 3 + ["dp-lora"],
            "epsilon_target": [1.0, 1.0, 1.0, 3.0],
            "seed": [0, 1, 2, 0],
            "accuracy": [0.60, 0.50, 0.40, 0.55],
        }
    )
    # seed 2 has no public twin and must not be paired; seed order differs on purpose
    public = pd.DataFrame(
        {
            "method": ["lalora", "lalora", "dp-lora"],
            "epsilon_target": [1.0, 1.0, 3.0],
            "seed": [1, 0, 0],
            "accuracy": [0.60, 0.50, 0.55],
        }
    )
    gap = tuning_gap(private, public)
    assert gap[["method", "seeds", "resolved"]].values.tolist() == [["lalora", 2, False], ["dp-lora", 1, False]]
    text = tuning_gap_markdown(gap)
    # lalora: differences -0.1 (seed 0) and +0.1 (seed 1): mean 0, half-width 12.706 * 0.1414 / sqrt(2) = 1.271
    assert "| lalora | eps=1 | +0.0 | [-127.1, +127.1] | 2 | no |" in text
    assert "| dp-lora | eps=3 | +0.0 |  | 1 | no |" in text and "nan" not in text


def test_bad_compare_inputs_fail_before_work(tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "run_federated", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(ValueError, match="unknown method"):
        compare("fmnist-swin", "smoke", methods=("lora",), runs_dir=tmp_path, results_dir=tmp_path)
    with pytest.raises(ValueError, match="epsilon must be"):
        compare("fmnist-swin", "smoke", epsilons=(0.0,), runs_dir=tmp_path, results_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown task"):
        compare("mnist", "smoke", runs_dir=tmp_path, results_dir=tmp_path)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        compare("fmnist-swin", "smoke", workers=-1, runs_dir=tmp_path, results_dir=tmp_path)


def test_public_tuning_searches_on_public_data_only_and_measures_the_gap(tmp_path):
    """--tune-on public: every search run is on fmnist-swin-public (public classes' test images, 0-4),
    every final run on the private task; results in their own folder, whose summary says tuning cost
    no privacy; the gap to private tuning is paired by seed."""
    from lalora_lite.study.stats import run_table, tuning_gap
    from lalora_lite.study.tables import tuning_cost
    from lalora_lite.tasks import build_task

    public = build_task("fmnist-swin-public", "smoke", 0)
    private = build_task("fmnist-swin", "smoke", 0)
    assert set(public.val["labels"].tolist()) <= set(range(5)) and public.class_names[0] == "T-shirt/top"
    assert private.class_names[0] == "Sandal"  # the private task's label 0 is the public pool's class 5
    kwargs = dict(
        methods=("lalora",), runs_dir=tmp_path / "runs", results_dir=tmp_path / "results", progress=False, workers=1
    )
    tuned_public = compare("fmnist-swin", "smoke", tune_on="public", **kwargs)
    tuned_private = compare("fmnist-swin", "smoke", **kwargs)
    folder = tmp_path / "results" / "fmnist-swin" / "smoke+public-tuning"
    search = pd.read_csv(folder / "search.csv")
    assert set(search["task"]) == {"fmnist-swin-public"} and set(search["split"]) == {"val"}
    assert set(tuned_public["task"]) == {"fmnist-swin"} and set(tuned_public["split"]) == {"test"}
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["tuned_on"] == "public" and meta["search_task"] == "fmnist-swin-public"
    assert "cost in privacy: nothing" in tuning_cost(meta, pd.read_csv(folder / "chosen.csv"))
    gap = tuning_gap(run_table(tuned_private), run_table(tuned_public))
    assert gap["method"].tolist() == ["lalora"] and (gap["seeds"] == 1).all()
    # with one grid point both searches choose the same setting, so the final runs are the same runs
    assert (gap["public_minus_private"] == 0).all()
    # lalora figures: the public folder's summary gains the gap to its private twin, the twin none
    (tmp_path / "figures").mkdir()
    written = draw_folder(folder, tmp_path / "figures")
    assert folder / "tuning_gap.csv" in written
    assert pd.read_csv(folder / "tuning_gap.csv")["public_minus_private"].tolist() == [0.0] * len(gap)
    text = (folder / "summary.md").read_text()
    assert "## What tuning on public data gives up" in text and "(`../smoke`)" in text and "| lalora | eps=" in text
    draw_folder(tmp_path / "results" / "fmnist-swin" / "smoke", tmp_path / "figures")
    assert not (tmp_path / "results" / "fmnist-swin" / "smoke" / "tuning_gap.csv").exists()
    # a private twin recomputed at another shape no longer pairs: no gap, and the summary says why
    twin_meta = tmp_path / "results" / "fmnist-swin" / "smoke" / "meta.json"
    changed = json.loads(twin_meta.read_text())
    changed["profile_settings"]["local_steps"] += 1
    twin_meta.write_text(json.dumps(changed))
    assert folder / "tuning_gap.csv" not in draw_folder(folder, tmp_path / "figures")
    assert not (folder / "tuning_gap.csv").exists()
    text = (folder / "summary.md").read_text()
    assert "Not computed: `../smoke` ran with other profile settings (local_steps)" in text
    assert "| lalora | eps=" in text.split("## What tuning on public data gives up")[0]  # its own table stays
    with pytest.raises(ValueError, match="no public data to tune on; tune_on='public' is offered for: fmnist-swin"):
        compare("wordnet-minilm", "smoke", tune_on="public", runs_dir=tmp_path, results_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown tune_on 'both'; allowed: private, public"):
        compare("fmnist-swin", "smoke", tune_on="both", runs_dir=tmp_path, results_dir=tmp_path)
