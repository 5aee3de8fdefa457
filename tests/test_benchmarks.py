"""The benchmark scripts' CPU paths: exactness of the DP step against the loop, and the paper dry run.

These check correctness and that the scripts run, not speed (timings live in benchmarks/results/).
"""

import json
import os
import subprocess
import sys
from functools import partial

import pytest
import torch
from conftest import ROOT, load_script

load_benchmark = partial(load_script, "benchmarks")


@pytest.fixture(scope="module")
def dp_step():
    return load_benchmark("dp_step")


@pytest.mark.parametrize("model", ["swin", "roberta"])
def test_per_example_norms_and_clipped_sums_equal_the_loop(dp_step, model):
    """fp32 on the CPU: one gradient per image (Swin windows folded), norms and clipped sums to 1e-5."""
    check = dp_step.check_exactness(model, "tiny", 5, torch.device("cpu"))
    assert check["rows_equal_batch"]
    assert check["max_rel_err_norms"] <= 1e-5
    assert check["max_rel_err_clipped_sum"] <= 1e-5
    assert check["tensors"] > 4


def test_interleaved_timing_rows(dp_step):
    """Every variant gets a row: timed ones with ratios inside one repeat, Opacus on Swin with its error."""
    variants = ["non-private AB", "dp AB", "opacus hooks AB", "naive loop AB"]
    rows = dp_step.bench_model("swin", "tiny", 4, torch.device("cpu"), variants, repeats=3, warmup=1)
    by = {r["variant"]: r for r in rows}
    assert [r["variant"] for r in rows] == variants
    assert by["non-private AB"]["vs_nonprivate"]["median"] == 1.0
    assert by["dp AB"]["repeats"] == 3 and by["dp AB"]["vs_nonprivate"]["median"] > 0
    assert by["naive loop AB"]["naive_over_this"]["median"] == 1.0
    # hook-based engines see Swin's windows as examples: they fail (or would clip per window)
    assert "error" in by["opacus hooks AB"] and "median_s" not in by["opacus hooks AB"]
    assert "|" in dp_step.markdown(rows)


def test_paper_dry_run_on_tiny_configs(tmp_path):
    """The paper tasks' code path (hub-format datasets from disk, timm Swin at 224 px with window 7,
    a RoBERTa saved with save_pretrained) through run_federated, and the GPU-hours extrapolation."""
    out = tmp_path / "dry.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "paper_dry_run.py"),
            "--scale",
            "tiny",
            "--rounds",
            "1",
            "--local-steps",
            "2",
            "--epsilon",
            "0.5",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = {r["task"]: r for r in json.loads(out.read_text())["results"]}
    assert set(results) == {"cifar100-swin-b", "sst2-roberta"}
    for r in results.values():
        assert set(r["methods"]) == {"lalora", "dp-lora"}
        for m in r["methods"].values():
            assert m["local_steps_per_round"][0] > 0 and 0 < m["epsilon_spent"][0] <= 0.5
        cost = r["cost"]
        assert cost["final_runs"] == (6 * 3 + 1) * 3 and cost["total_gpu_hours"] > cost["final_gpu_hours"] > 0
    assert results["cifar100-swin-b"]["methods"]["lalora"]["eval_examples"] == 40


def test_compare_projection_counts_every_search_and_final_run():
    """The cost projection of compare_profile.py: run counts and seconds from per-phase measurements."""
    project = load_benchmark("compare_profile").project
    from lalora_lite.tasks import get_profile

    p = get_profile("fmnist-swin", "cpu")
    measured = {
        "methods": {
            m: {
                "setup_s": 0.0 if m == "fedlora" else 6.0,
                "train_s_per_round": 2.0,
                "eval_s": 1.0,
                "eval_examples": 2000,
            }
            for m in p.methods
        }
    }
    out = project(measured, "fmnist-swin", "cpu", workers=2)
    grid = len(p.lr_grid) * len(p.clip_grid)
    assert out["search_runs"] == 6 * grid * len(p.epsilons) + len(p.lr_grid)
    assert out["final_runs"] == (6 * len(p.epsilons) + 1) * len(p.seeds)
    evaluations = -(-p.rounds // p.eval_every)
    one_final = p.rounds * 2.0 + evaluations * 1.0
    assert out["final_worker_s"] == pytest.approx(out["final_runs"] * one_final)
    one_search = p.search_rounds * 2.0 + evaluations * p.val_size / 2000
    assert out["search_worker_s"] == pytest.approx(out["search_runs"] * one_search)
    assert out["setup_worker_s"] == pytest.approx(6.0 * len(p.epsilons) * len(p.seeds) * 2)


def test_round_skew_orders_the_dirichlet_concentrations():
    skew = load_benchmark("stand_in_regime").round_skew
    skewed, mild = skew(5, 200, 0.1, 8, 4, 10), skew(5, 200, 1.0, 8, 4, 10)
    assert 0 < mild < skewed < 0.8


def test_regime_settings_replace_profile_fields_and_reject_unknown_ones():
    with_settings = load_benchmark("stand_in_regime").with_settings
    from lalora_lite.tasks import get_profile

    base = get_profile("wordnet-minilm", "cpu")
    changed = with_settings(base, ["train_size=40000", "optimizer=adamw", "lr_grid=(0.1, 0.2)"])
    assert (changed.train_size, changed.optimizer, changed.lr_grid) == (40_000, "adamw", (0.1, 0.2))
    assert changed.val_size == base.val_size
    with pytest.raises(SystemExit, match="trainsize"):
        with_settings(base, ["trainsize=4"])


def test_step_scaling_times_both_steps_and_counts_flops():
    """The batch-scaling benchmark runs on the smoke stand-in (speed itself is not tested)."""
    result = load_benchmark("step_scaling").measure("fmnist-swin", "smoke", [2, 4], repeats=1)
    assert [r["batch"] for r in result["rows"]] == [2, 4]
    for r in result["rows"]:
        assert r["dp_ms_min"] <= r["dp_ms_per_example"] <= r["dp_ms_max"]
        assert r["plain_ms_per_example"] > 0 and r["flops_per_example"] > 1e6
    with pytest.raises(ValueError, match="at most the"):
        load_benchmark("step_scaling").measure("fmnist-swin", "smoke", [10**6], repeats=1)


def test_search_splits_scores_each_setting_on_each_seeds_validation_split(tmp_path, capsys):
    """benchmarks/search_splits.py: one run per setting and seed, scored like the search, read back
    from the run store on a second call; a DP method without a budget is refused before any run."""
    main = load_benchmark("search_splits").main
    argv = [
        "--task",
        "fmnist-swin",
        "--profile",
        "smoke",
        "--method",
        "fedlora",
        "--lrs",
        "0.1",
        "0.2",
        "--seeds",
        "0",
        "1",
        "--workers",
        "1",
        "--runs",
        str(tmp_path / "runs"),
        "--out",
        str(tmp_path),
    ]
    scores = main(argv)
    assert sorted(zip(scores["lr"], scores["seed"])) == [(0.1, 0), (0.1, 1), (0.2, 0), (0.2, 1)]
    assert scores["score"].between(0, 100).all()
    runs = sorted((tmp_path / "runs" / "fmnist-swin" / "smoke").glob("val_fedlora_nodp_seed*.csv"))
    assert len(runs) == 4
    again = main(argv)
    assert again.equals(scores)
    assert (tmp_path / "search_splits-fmnist-swin-smoke-fedlora-nodp.csv").exists()
    assert "mean" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--profile", "smoke", "--method", "lalora", "--runs", str(tmp_path / "none")])
    assert "--epsilon is required" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_gpu_session_runs_its_parts_on_the_cpu_at_tiny_sizes_and_names_the_gpu_commands(tmp_path):
    """The prepared GPU script, checked before GPU time is spent: its wide-stand-in part runs end to end on the
    CPU at the tiny size and writes its JSON; the GPU command lines are the ones the issue asks for."""
    session = load_benchmark("gpu_session")
    gpu = {p: " ".join(session.commands(p, False, 4, tmp_path / "runs", tmp_path)) for p in session.PARTS}
    assert "--size paper --batches 16 32 64" in gpu["dp_step"] and "--device cuda" in gpu["dp_step"]
    assert "--check" in gpu["dp_step"] and "--variants non-private AB dp AB" in gpu["dp_step"]
    assert "--task fmnist-swin-wide --profile gpu --device cuda --workers 4" in gpu["wide"]
    assert "--task fmnist-swin --profile cpu --device cuda --workers 4" in gpu["stand_in"]
    assert sum(session.LIMITS.values()) <= 8 * 60
    out = tmp_path / "session.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_session.py"), "--tiny", "--parts", "wide", "--workers", "1",
         "--runs", str(tmp_path / "runs"), "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "LALORA_CACHE": str(tmp_path)},
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(out.read_text())
    assert report["device"] == "cpu (tiny)" and report["parts"]["wide"]["status"] == "ok"
