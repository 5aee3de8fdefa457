"""Cost estimates: FLOPs from the real architectures on the meta device, rates from stored measurements."""

import json
import sys
from pathlib import Path

import pytest

from lalora_lite.study.estimate import MEASURED, estimate, estimate_line, measure_graph

ROOT = Path(__file__).resolve().parents[1]
DRY_RUN = ROOT / "benchmarks" / "results" / "paper_dry_run-paper-cuda.json"
DP_STEP = ROOT / "benchmarks" / "results"


def test_measured_references_are_the_stored_measurements():
    """The constants in lalora_lite.study.estimate are the dry run's numbers (they cannot drift apart)."""
    stored = {r["task"]: r for r in json.loads(DRY_RUN.read_text())["results"]}
    for m, task in zip(MEASURED["h100"], ("cifar100-swin-b", "sst2-roberta")):
        dp = stored[task]["methods"]["dp-lora"]
        assert m.train_s_per_round == pytest.approx(dp["train_s_per_round"], rel=1e-4)
        assert m.eval_s_per_1000 == pytest.approx(1000 * dp["eval_s"] / dp["eval_examples"], rel=1e-3)
        profile = stored[task]["profile"]
        assert m.examples_per_round == profile["clients_per_round"] * profile["local_steps"] * profile["batch_size"]


@pytest.mark.parametrize(
    "model, size, gmacs",
    [
        ("swin_tiny_patch4_window7_224", 224, 4.5),  # timm's / the Swin paper's published GMACs
        ("swin_base_patch4_window7_224", 224, 15.4),
    ],
)
def test_forward_flops_match_the_published_counts(model, size, gmacs):
    flops = measure_graph("vision", model, size, batch=2).forward_flops
    assert flops / 2e9 == pytest.approx(gmacs, rel=0.05)  # a multiply-add is 2 FLOPs


def test_step_memory_is_an_upper_bound_within_2x_of_the_measured_peaks():
    """Against the H100 peaks of benchmarks/dp_step.py (one DP step, A and B trainable)."""
    swin = {
        r["batch"]: r["peak_mb"]
        for r in json.loads((DP_STEP / "dp_step-paper-cuda-run2-swin.json").read_text())["rows"]
        if r["variant"] == "dp AB"
    }
    roberta = {
        r["batch"]: r["peak_mb"]
        for r in json.loads((DP_STEP / "dp_step-paper-cuda-run2-roberta.json").read_text())["rows"]
        if r["variant"] == "dp AB"
    }
    cases = [(measure_graph("vision", "swin_base_patch4_window7_224", 224, b, rank=16), swin[b]) for b in (16, 32)]
    cases.append((measure_graph("text", "roberta-base", 128, 32, rank=16, num_classes=2), roberta[32]))
    for graph, peak_mb in cases:
        estimated_mb = graph.step_memory_bytes / 2**20
        assert peak_mb <= estimated_mb <= 2 * peak_mb, (estimated_mb, peak_mb)


def test_h100_estimate_of_the_paper_profile_agrees_with_the_dry_run_cost():
    """Two routes to the same number: FLOP scaling (this module) and the dry run's measured rounds
    (benchmarks/paper_dry_run.paper_cost)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from paper_dry_run import paper_cost

    stored = {r["task"]: r for r in json.loads(DRY_RUN.read_text())["results"]}
    for task in ("cifar100-swin-b", "sst2-roberta"):
        ours = estimate(task, "paper", "h100")["compare_hours"]
        assert ours == pytest.approx(paper_cost(stored[task])["total_gpu_hours"], rel=0.05), task


def test_colab_fits_a_t4_in_about_an_hour_per_method_and_budget():
    for task in ("cifar100-swin-t", "sst2-roberta"):
        e = estimate(task, "colab", "t4")
        assert 0.25 < e["hours_per_method_and_budget"] < 1.5, e
        assert e["step_memory_gb"] < 15  # a T4 has 15 GB
    assert "assumption" in estimate_line("cifar100-swin-t", "colab", "t4")


def test_bad_estimate_requests_are_errors():
    with pytest.raises(ValueError, match="offline stand-in"):
        estimate("fmnist-swin", "cpu", "t4")
    with pytest.raises(ValueError, match="unknown device 'a100'.*t4, h100"):
        estimate("cifar100-swin-t", "colab", "a100")


def test_compare_prints_the_estimate_before_it_starts(capsys):
    """A paper task's compare says what it will cost first (here it then stops at a bad --workers)."""
    from lalora_lite.cli import main

    assert main(["compare", "--task", "cifar100-swin-t", "--profile", "colab", "--workers", "0"]) == 2
    out = capsys.readouterr()
    assert "cifar100-swin-t [colab] estimate on t4" in out.out and "estimate on h100" in out.out
    assert "workers must be >= 1, got 0" in out.err


def test_the_estimate_command_prints_a_table_row_per_device(capsys):
    from lalora_lite.cli import main

    assert main(["estimate", "--task", "sst2-roberta", "--profile", "colab"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| task |") and [r.split(" | ")[2] for r in lines[2:]] == ["t4", "h100"]
    assert (
        main(["estimate", "--task", "wordnet-minilm", "--profile", "cpu"]) == 2
    )  # a stand-in: measured, not estimated
