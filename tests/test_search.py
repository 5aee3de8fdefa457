"""The comparison's hyper-parameter search: log grids, edge widening, scoring."""

import math

import pandas as pd
import pytest
from conftest import load_script

from lalora_lite.study.comparison import search
from lalora_lite.study.runs import run_digest
from lalora_lite.study.search import GridSearch, check_grid, score, widened
from lalora_lite.tasks import get_profile


def test_widened_adds_one_log_step_on_the_asked_side():
    assert widened((0.1, 0.2, 0.4), "high") == (0.1, 0.2, 0.4, 0.8)
    assert widened((0.1, 0.2, 0.4), "low") == (0.05, 0.1, 0.2, 0.4)
    assert widened((1e-3, 3e-3, 9e-3), "low") == pytest.approx((3.333e-4, 1e-3, 3e-3, 9e-3))


@pytest.mark.parametrize("bad", [(), (0.1, 0.1), (0.2, 0.1), (0.1, 0.2, 0.3), (-1.0, 1.0)])
def test_grids_must_be_positive_and_log_spaced(bad):
    with pytest.raises(ValueError, match="grid|lr_grid"):
        check_grid("lr_grid", bad)


def test_score_is_the_mean_of_the_last_two_evaluations():
    history = pd.DataFrame({"round": [1, 2, 3, 4, 5], "accuracy": [0.9, math.nan, 0.2, math.nan, 0.4]})
    assert score(history) == pytest.approx(0.3)


def _scores_from(search_, surface):
    for point in search_.pending():
        search_.scores[point] = surface(*point)


def test_widening_follows_the_optimum_until_it_is_interior():
    """Best at lr 1.6 (outside the starting grid): the grid grows upwards until 1.6 is inside."""
    s = GridSearch("lalora", 1.0, (0.1, 0.2, 0.4), (0.5, 1.0, 2.0), max_widen=3)

    def surface(lr, clip):
        return -abs(math.log2(lr / 1.6)) - abs(math.log2(clip / 1.0))

    rounds = 0
    while True:
        _scores_from(s, surface)
        rounds += 1
        if not s.widen():
            break
    assert s.best() == (1.6, 1.0) and s.lrs == (0.1, 0.2, 0.4, 0.8, 1.6, 3.2) and s.edges() == []
    assert rounds == 4 and s.chosen_row()["search_runs"] == 6 * 3 and s.chosen_row()["on_edge"] == ""


def test_widening_stops_at_its_limit_and_flags_the_edge():
    s = GridSearch("dp-lora", 2.0, (0.1, 0.2, 0.4), (0.5, 1.0, 2.0), max_widen=1)
    for _ in range(5):
        _scores_from(s, lambda lr, clip: clip - abs(math.log2(lr / 0.2)))  # bigger clip is always better
        if not s.widen():
            break
    assert s.clips == (0.5, 1.0, 2.0, 4.0) and s.chosen_row()["on_edge"] == "clip-high"
    assert s.chosen_row()["widenings"] == 1


def test_exact_ties_go_to_the_most_interior_point_then_grid_order():
    s = GridSearch("lalora", 1.0, (0.1, 0.2, 0.4), (0.5, 1.0, 2.0))
    _scores_from(s, lambda lr, clip: 0.5)
    assert s.best() == (0.2, 1.0)
    s = GridSearch("lalora", 1.0, (0.1, 0.2, 0.4), (0.5, 1.0, 2.0))
    _scores_from(s, lambda lr, clip: 0.5 if clip == 0.5 else 0.4)
    assert s.best() == (0.2, 0.5)


def test_search_runs_every_budget_and_widens_through_the_runner(monkeypatch):
    """Private methods are searched at every epsilon, the non-private one over learning rates only."""
    profile = get_profile("fmnist-swin", "cpu")
    seen = []

    class FakeRunner:
        def run(self, specs, desc):
            seen.extend(specs)
            # the best point is lr 0.8 (one step above the grid), clip 1.0, for every method and budget
            return [
                pd.DataFrame(
                    {"round": [40], "accuracy": [1 - (abs(math.log2(s.lr / 0.8)) + abs(math.log2(s.clip_norm))) / 10]}
                )
                for s in specs
            ]

    searches, history = search("fmnist-swin", "cpu", profile, ("fedlora", "lalora"), (1.0, 3.0), FakeRunner())
    assert [(s.method, s.epsilon) for s in searches] == [("fedlora", None), ("lalora", 1.0), ("lalora", 3.0)]
    assert all(s.best()[0] == 0.8 and s.edges() == [] for s in searches)
    assert {sp.split for sp in seen} == {"val"} and {sp.seed for sp in seen} == {0}
    assert {sp.rounds for sp in seen} == {profile.search_rounds}
    fedlora_runs = [sp for sp in seen if sp.method == "fedlora"]
    assert len(fedlora_runs) == 3 + 1 + 1 and {sp.clip_norm for sp in fedlora_runs} == {profile.clip_grid[0]}
    assert len([sp for sp in seen if sp.method == "lalora" and sp.epsilon == 1.0]) == 9 + 3 + 3
    assert len(history) == len(seen)


def test_ties_within_one_standard_error_go_to_the_most_interior_point():
    """A DP ridge (only lr x clip matters): the corner wins by 0.4 points, within one standard error
    of 1,000 validation examples (1.46 points), so the centre is chosen and nothing widens. The scores
    are the cpu profile's DP-LoRA search at epsilon = 1 (runs/, seed 0, mean of the last two evaluations)."""
    s = GridSearch("dp-lora", 1.0, (0.1, 0.2, 0.4), (0.5, 1.0, 2.0), val_size=1000)
    ridge = {(0.1, 2.0): 0.693, (0.2, 1.0): 0.6895, (0.4, 0.5): 0.6845}  # lr x clip = 0.2 on the anti-diagonal
    _scores_from(s, lambda lr, clip: ridge.get((lr, clip), 0.45))
    assert s.tolerance() == pytest.approx(math.sqrt(0.693 * 0.307 / 1000))
    assert s.best() == (0.2, 1.0) and s.edges() == [] and not s.widen()
    # without a validation size there is no tolerance: the corner wins and the grid widens
    strict = GridSearch("dp-lora", 1.0, (0.1, 0.2, 0.4), (0.5, 1.0, 2.0))
    _scores_from(strict, lambda lr, clip: ridge.get((lr, clip), 0.45))
    assert strict.best() == (0.1, 2.0) and strict.widen()
    # a clearly better edge point is still chosen (and widened)
    clear = GridSearch("dp-lora", 1.0, (0.1, 0.2, 0.4), (0.5, 1.0, 2.0), val_size=1000)
    _scores_from(clear, lambda lr, clip: 0.75 if (lr, clip) == (0.4, 2.0) else 0.6)
    assert clear.best() == (0.4, 2.0) and clear.edges() == ["lr-high", "clip-high"]


def test_search_progress_reads_finished_runs_and_applies_the_rule(tmp_path):
    """scripts/search_progress.py: the grid from val_*.csv files, the rule's choice, a step still running (the
    profile's starting grid counted as part of it), and runs of another digest or another seed's split kept apart
    from the search's own."""
    module = load_script("scripts", "search_progress")
    profile = get_profile("wordnet-minilm", "cpu")
    current, (lr_low, lr_mid, lr_high) = run_digest(profile), profile.lr_grid
    assert profile.clip_grid == (0.5, 1.0, 2.0) and profile.seeds[0] == 0

    def write(method, eps, lr, clip, last_two, seed=0, digest=current):
        rows = [
            {
                "task": "wordnet-minilm",
                "profile": "cpu",
                "round": r,
                "method": method,
                "epsilon_target": eps,
                "seed": seed,
                "lr": lr,
                "clip_norm": clip,
                "accuracy": acc,
                "run_wall_s": 100.0,
            }
            for r, acc in zip((10, 20, 30), (0.1, *last_two))
        ]
        name = f"val_{method}_{eps}_seed{seed}_lr{lr}_clip{clip}_r30_{digest}.csv"
        pd.DataFrame(rows).to_csv(tmp_path / name, index=False)

    for lr in profile.lr_grid:  # peak at (lr_mid, 1): interior
        for clip in profile.clip_grid:
            write("lalora", 2.0, lr, clip, (0.5, 0.7) if (lr, clip) == (lr_mid, 1.0) else (0.3, 0.3))
    write("dp-lora", 2.0, lr_low, 1.0, (0.4, 0.4))
    write("dp-lora", 2.0, lr_mid, 2.0, (0.4, 0.4))  # 7 points of the profile's 3 x 3 grid not finished yet
    write("fedlora", float("nan"), lr_high, 0.5, (0.8, 0.9))  # lr_low and lr_mid not finished yet
    write("fedlora", float("nan"), lr_high, 0.5, (0.6, 0.6), seed=1)  # benchmarks/search_splits.py on seed 1's split
    write("fedlora", float("nan"), lr_high, 0.5, (0.2, 0.2), digest="0123abcd")  # made at other profile settings
    runs = module.search_runs(tmp_path)
    assert len(runs) == 14 and runs.loc[runs.method == "fedlora", "epsilon"].eq(math.inf).all()
    text = module.progress(runs)  # the cpu profile's 1,000 validation glosses
    parts = {part.split("\n", 1)[0]: part for part in text.split("== run digest ")[1:]}
    mine = parts[f"{current} (13 runs): the current profile's"]
    other = parts[f"0123abcd (1 runs): other settings (now {current})"].split("\n", 1)[1]
    assert f"lalora eps=2 seed 0 (9 runs): choice lr {lr_mid:g} / clip 1 (score 60.0), edges: none" in mine
    assert "dp-lora eps=2 seed 0 (2 runs): 7 of 9 points still running" in mine
    assert "fedlora eps=inf seed 0 (1 runs): 2 of 3 points still running" in mine
    assert f"fedlora eps=inf seed 1 (1 runs): choice lr {lr_high:g} / clip 0.5 (score 60.0), edges: none" in mine
    assert other.strip().startswith(f"fedlora eps=inf seed 0 (1 runs): choice lr {lr_high:g} / clip 0.5 (score 20.0)")
    with pytest.raises(SystemExit, match="no finished search runs"):
        module.search_runs(tmp_path / "empty")
