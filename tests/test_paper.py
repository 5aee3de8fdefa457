"""The paper's reported numbers are data (results/paper/reported.csv), read and checked by one loader."""

import pandas as pd
import pytest

from lalora_lite.paper import reported, reported_path


def test_reported_cells_are_complete_and_checked():
    table = reported()
    main = table[table["table"] == "main"]
    assert len(main) == 16 and set(main["method"]) == {"dp-lora", "ffa-lora", "rolora", "lalora"}
    cell = main[(main["model"] == "Swin-B") & (main["dataset"] == "Tiny-ImageNet") & (main["method"] == "lalora")]
    assert cell["accuracy"].item() == 60.68 and cell["epsilon"].item() == 1
    ablation = table[table["table"] == "ablation"].set_index("method")["accuracy"]
    assert ablation.to_dict() == {"dp-lora": 30.64, "dp-lora+filter": 49.85, "lalora-nofilter": 53.07, "lalora": 61.97}
    # in every main-table row of the paper LA-LoRA is the best of the four
    best = main.loc[main.groupby(["model", "dataset"])["accuracy"].idxmax(), "method"]
    assert set(best) == {"lalora"}


@pytest.mark.parametrize("change, message", [
    (lambda t: t.assign(method=t["method"].replace("lalora", "la-lora")), "unknown method"),
    (lambda t: t.assign(accuracy=t["accuracy"] / 100 + 100), "percentages"),
    (lambda t: t.drop(columns="source"), "columns must be"),
])
def test_a_malformed_file_is_a_clear_error(tmp_path, change, message):
    path = tmp_path / "reported.csv"
    change(pd.read_csv(reported_path())).to_csv(path, index=False)
    with pytest.raises(ValueError, match=message):
        reported(path)
