"""The paper's reported numbers are data (results/paper/reported.csv), read and checked by one loader;
our stored results are set next to them by lalora_lite.study.paper."""

import numpy as np
import pandas as pd
import pytest

from lalora_lite.study.paper import ours_vs_reported, paper_layout, plot_ours_vs_reported, reported, reported_path


def test_reported_cells_are_complete_and_checked():
    table = reported()
    main = table[table["table"] == "main"]
    assert len(main) == 16 and set(main["method"]) == {"dp-lora", "ffa-lora", "rolora", "lalora"}
    cell = main[(main["model"] == "Swin-B") & (main["dataset"] == "Tiny-ImageNet") & (main["method"] == "lalora")]
    assert cell["value"].item() == 60.68 and cell["epsilon"].item() == 1
    ablation = table[table["table"] == "ablation"].set_index("method")["value"]
    assert ablation.to_dict() == {"dp-lora": 30.64, "dp-lora+filter": 49.85, "lalora-nofilter": 53.07, "lalora": 61.97}
    sharp = table[table["metric"] == "top_hessian_eigenvalue"].set_index("method")["value"]
    assert sharp.to_dict() == {"dp-lora": 101.62, "lalora": 64.77}
    # in every main-table row of the paper LA-LoRA is the best of the four
    best = main.loc[main.groupby(["model", "dataset"])["value"].idxmax(), "method"]
    assert set(best) == {"lalora"}


def test_paper_layout_is_the_csv_pivoted():
    table = reported()
    layout = paper_layout(table, "main")
    assert list(layout.columns) == ["dp-lora", "ffa-lora", "rolora", "lalora"] and len(layout) == 4
    assert layout.loc[("Swin-T", "CIFAR-100", 3), "rolora"] == 55.19
    back = layout.stack().rename("value").reset_index()
    merged = back.merge(table[table["table"] == "main"], on=["model", "dataset", "epsilon", "method"])
    assert len(merged) == 16 and (merged["value_x"] == merged["value_y"]).all()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t.assign(method=t["method"].replace("lalora", "la-lora")), "unknown method"),
        (
            lambda t: t.assign(value=np.where(t["metric"] == "accuracy", t["value"] / 100 + 100, t["value"])),
            "percentages",
        ),
        (lambda t: t.assign(metric=t["metric"].replace("top_hessian_eigenvalue", "sharpness")), "unknown metric"),
        (lambda t: t.drop(columns="source"), "columns must be"),
    ],
)
def test_a_malformed_file_is_a_clear_error(tmp_path, change, message):
    path = tmp_path / "reported.csv"
    change(pd.read_csv(reported_path())).to_csv(path, index=False)
    with pytest.raises(ValueError, match=message):
        reported(path)


def fake_results(folder, task, profile, accuracies):
    """A results folder with one evaluated round per run: ``accuracies[method] = [per seed]`` at eps 3."""
    rows = [
        {
            "task": task,
            "method": m,
            "epsilon_target": 3.0,
            "seed": s,
            "round": 1,
            "accuracy": a,
            "upload_bytes": 1,
            "epsilon_spent": 3.0,
        }
        for m, accs in accuracies.items()
        for s, a in enumerate(accs)
    ]
    out = folder / task / profile
    out.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(out / "history.csv", index=False)


def test_ours_next_to_the_paper_with_sign_verdicts(tmp_path):
    fake_results(
        tmp_path,
        "cifar100-swin-t",
        "colab",
        {
            "lalora": [0.60, 0.62, 0.64],
            "dp-lora": [0.50, 0.51, 0.55],
            "rolora": [0.70, 0.73, 0.74],
            "ffa-lora": [0.5, 0.7, 0.6],
        },
    )
    fake_results(tmp_path, "mystery-task", "cpu", {"lalora": [0.1, 0.2]})  # not a paper cell: left out
    table = ours_vs_reported(tmp_path).set_index("method")
    assert set(table.index) == {"lalora", "dp-lora", "rolora", "ffa-lora"} and not table["stand_in"].any()
    assert table.loc["lalora", "paper"] == 60.07 and table.loc["lalora", "ours"] == pytest.approx(62.0)
    assert table.loc["lalora", "ours_minus_paper"] == pytest.approx(62.0 - 60.07)
    assert table.loc["dp-lora", "sign"] == "agrees"  # LA-LoRA ahead, as in the paper
    assert table.loc["rolora", "sign"] == "contradicts"  # RoLoRA ahead by an interval excluding 0
    assert table.loc["ffa-lora", "sign"] == "unresolved"  # differences 0.1, -0.08, 0.04
    assert table.loc["dp-lora", "paper_lalora_minus_it"] == pytest.approx(60.07 - 45.40)


def test_a_stand_in_is_compared_with_the_paper_by_sign_never_by_level(tmp_path):
    fake_results(tmp_path, "fmnist-swin", "cpu", {"lalora": [0.60, 0.62, 0.64], "dp-lora": [0.50, 0.51, 0.55]})
    table = ours_vs_reported(tmp_path).set_index("method")
    assert table["stand_in"].all() and table["ours_minus_paper"].isna().all()
    assert table.loc["dp-lora", "sign"] in ("agrees", "unresolved")  # the sign comparison is kept
    plot_ours_vs_reported(table.reset_index(), tmp_path / "signs.png")
    assert (tmp_path / "signs.png").stat().st_size > 0
