"""The explanation study: its curve logic, and that `lalora explain` resumes and gives the same CSVs with 1 or
2 workers (smoke)."""

import math

import pandas as pd

from lalora_lite.cli import main
from lalora_lite.study.explain import CLIP, EXPERIMENTS, Study, anchors, extension, lr_clip, planned, rung_of
from lalora_lite.study.explain_analysis import best_of_curve, paired, tuning_check


def test_the_ladder_is_sqrt2_spaced_and_rungs_round_trip():
    assert lr_clip(0) == 0.1 and lr_clip(2) == 0.2 and lr_clip(4) == 0.4
    assert abs(lr_clip(1) / lr_clip(0) - math.sqrt(2)) < 1e-5
    assert all(rung_of(lr_clip(k)) == k for k in range(-4, 10))


def test_a_curve_extends_past_the_edge_its_best_sits_on_and_stops_inside_or_at_the_limit():
    assert extension({2: 0.5, 3: 0.6, 4: 0.7}, (2, 4), 2) == [5]  # best at the top: one rung up
    assert extension({2: 0.7, 3: 0.6, 4: 0.5}, (2, 4), 2) == [1]
    assert extension({2: 0.5, 3: 0.7, 4: 0.6}, (2, 4), 2) == []  # inside: done
    assert extension({2: 0.5, 3: 0.6, 4: 0.65, 5: 0.66, 6: 0.7}, (2, 4), 2) == []  # at the limit
    assert extension({3: 0.6, 4: 0.6}, (3, 4), 1) == [2]  # a tie goes to the smaller step


def test_anchors_follow_the_comparisons_choice_and_fall_back_for_untuned_methods():
    chosen = pd.DataFrame(
        {"method": ["dp-lora", "dp-lora", "lalora", "fedlora"], "epsilon": [1.0, 3.0, 1.0, math.inf],
         "lr": [0.2, 0.2, 0.1, 0.4], "clip_norm": [1.0, 2.0, 4.0, 0.5]}
    )  # fmt: skip
    assert anchors(chosen, "dp-lora", 1.0) == rung_of(0.2) == 2
    assert anchors(chosen, "dp-lora", 3.0) == 4
    assert anchors(chosen, "dp-lora", 0.25) == 2  # the nearest tuned budget
    assert anchors(chosen, "dp-head", 1.0) == 4  # dp-lora's plus two rungs
    assert anchors(chosen, "lalora-authors", 1.0) == 2  # lalora's (0.4) minus two rungs
    assert anchors(chosen, "fedlora", None) == 2  # lr x C = 0.4 x 0.5
    study = Study("fmnist-swin", "smoke", None, chosen)
    assert study.chosen_lr_clip("fedlora", None) == 0.4 * CLIP  # no DP: the chosen lr, C only names the run
    assert study.chosen_lr_clip("dp-lora", 3.0) == 0.4  # the exact chosen lr x C, not the nearest rung
    assert study.chosen_lr_clip("ffa-lora", 3.0) == lr_clip(4)  # not tuned: the anchor's rung
    assert anchors(None, "ffa-lora", 1.0) == 4


def test_the_text_study_is_reduced_to_fit_about_three_hours_and_the_vision_study_is_whole():
    text, vision = Study("wordnet-minilm", "cpu", None, None), Study("fmnist-swin", "cpu", None, None)
    assert text.shape.experiments == ("head-control", "budget") and vision.shape.experiments == EXPERIMENTS
    assert text.shape.curve_epsilons == (3.0,) and "lalora-authors" not in text.shape.head_methods
    # 4 methods x 1 budget x 3 rungs x 3 seeds, then the budget experiment: 3 no-DP settings and 3 methods at
    # 1x and 2x rounds, 3 seeds each
    assert planned(text, text.shape.experiments) == 36 + 27
    assert planned(vision, ("head-control",)) == 5 * 2 * 4 * 3


def test_best_of_curve_and_paired_differences_with_holm():
    runs = pd.DataFrame(
        [
            {"method": m, "arm": "default", "epsilon": 1.0, "lr_clip": v, "seed": s, "accuracy": acc + 0.01 * s}
            for m, table in {"a": {0.2: 0.5, 0.4: 0.7, 0.8: 0.6}, "b": {0.2: 0.6, 0.4: 0.5}}.items()
            for v, acc in table.items()
            for s in range(3)
        ]
    )
    best = best_of_curve(runs).set_index("method")
    assert best.loc["a", "lr_clip"] == 0.4 and best.loc["a", "inside"]
    assert best.loc["b", "lr_clip"] == 0.2 and not best.loc["b", "inside"]
    a = runs[(runs["method"] == "a") & (runs["lr_clip"] == 0.4)].set_index("seed")["accuracy"]
    b = runs[(runs["method"] == "b") & (runs["lr_clip"] == 0.2)].set_index("seed")["accuracy"]
    diffs = paired([("a minus b", a, b), ("b minus a", b, a)])
    assert diffs["difference"].round(6).tolist() == [0.1, -0.1]
    assert diffs["p_t"].tolist() == [0.0, 0.0] and diffs["p_sign_flip"].tolist() == [0.25, 0.25]


def test_the_tuning_check_prices_the_comparisons_pick_on_the_curves():
    means = {2: 0.60, 3: 0.66, 4: 0.70, 5: 0.50}  # rung -> mean accuracy; rung 4 (lr x C 0.4) is the best
    curves = pd.DataFrame(
        [
            {"method": "m", "arm": "default", "epsilon": 1.0, "lr_clip": lr_clip(k), "seed": s, "accuracy": acc}
            for k, acc in means.items()
            for s in range(3)
        ]
    )

    def check(lr, clip):
        chosen = pd.DataFrame([{"method": "m", "epsilon": 1.0, "lr": lr, "clip_norm": clip},
                               {"method": "untuned", "epsilon": 1.0, "lr": 0.1, "clip_norm": 1.0}])  # fmt: skip
        return tuning_check(curves, chosen)

    table, verdict = check(0.2, 2.0)  # lr x C 0.4: the best rung
    assert len(table) == 1 and verdict.verdict == "not a lottery"
    assert table["lost"].item() == 0 and math.isclose(table["drop_one_rung_up"].item(), 0.20)
    table, verdict = check(0.1, 2.0)  # lr x C 0.2: 10 points below the best
    assert verdict.verdict == "a lottery" and math.isclose(table["lost"].item(), 0.10)


def _explain(tmp_path, runs, results, workers):
    argv = ["explain", "--task", "fmnist-swin", "--profile", "smoke", "--runs", str(tmp_path / runs), "--results",
            str(tmp_path / results), "--figures", str(tmp_path / "figures"), "--workers", str(workers),
            "--experiments", "budget", "filter-strength"]  # fmt: skip
    assert main(argv) == 0
    folder = tmp_path / results / "explain" / "fmnist-swin" / "smoke"
    return {p.name: pd.read_csv(p).drop(columns="run_s", errors="ignore") for p in sorted(folder.glob("*.csv"))}


def test_explain_resumes_and_gives_the_same_csvs_with_one_or_two_workers(tmp_path):
    one = _explain(tmp_path, "runs1", "res1", 1)
    two = _explain(tmp_path, "runs2", "res2", 2)
    assert set(one) == {"budget.csv", "filter-strength.csv", "head-control.csv", "verdicts.csv"}
    for name in one:
        pd.testing.assert_frame_equal(one[name], two[name])
    stored = sorted((tmp_path / "runs1").rglob("*.csv"))
    mtimes = [p.stat().st_mtime_ns for p in stored]
    again = _explain(tmp_path, "runs1", "res1", 2)  # resumes: every run is read back, none recomputed
    assert [p.stat().st_mtime_ns for p in sorted((tmp_path / "runs1").rglob("*.csv"))] == mtimes
    for name in one:
        pd.testing.assert_frame_equal(one[name], again[name])
    assert (tmp_path / "res1" / "explain" / "fmnist-swin" / "smoke" / "summary.md").exists()
    assert (tmp_path / "figures" / "explain-fmnist-swin-smoke-curves.png").exists()


def test_bad_explain_input_fails_before_work(tmp_path, capsys):
    assert main(["explain", "--task", "fmnist-swin", "--profile", "smoke", "--experiments", "h9",
                 "--runs", str(tmp_path)]) == 2  # fmt: skip
    assert "unknown experiment(s) ['h9']" in capsys.readouterr().err
    assert main(["explain", "--task", "nope", "--profile", "smoke", "--runs", str(tmp_path)]) == 2
    assert not any(tmp_path.iterdir())
