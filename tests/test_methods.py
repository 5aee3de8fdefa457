import pytest

from lalora_lite.methods import METHODS, get_method


def schedule(name, rounds=3, steps=4):
    m = get_method(name)
    return ["".join(sorted(m.active(t, k))) for t in range(rounds) for k in range(steps)]


def test_schedules_over_three_rounds():
    assert schedule("dp-lora") == ["AB"] * 12
    assert schedule("fedlora") == ["AB"] * 12
    assert schedule("ffa-lora") == ["B"] * 12
    assert schedule("rolora") == ["B"] * 4 + ["A"] * 4 + ["B"] * 4
    assert schedule("lalora") == ["B", "A", "B", "A"] * 3  # B first in every round
    assert schedule("lalora-nofilter") == schedule("lalora")
    assert schedule("dp-lora+filter") == schedule("dp-lora")


def test_uploads_filter_and_privacy():
    up = {name: [sorted(m.uploads(t, 4)) for t in range(2)] for name, m in METHODS.items()}
    assert up["ffa-lora"] == [["B"], ["B"]]
    assert up["rolora"] == [["B"], ["A"]]
    assert up["lalora"] == [["A", "B"], ["A", "B"]]
    assert up["dp-lora"] == [["A", "B"], ["A", "B"]]
    assert [n for n, m in METHODS.items() if m.smooth] == ["dp-lora+filter", "lalora"]
    assert [n for n, m in METHODS.items() if not m.private] == ["fedlora"]


def test_unknown_method_lists_known_ones():
    with pytest.raises(ValueError, match="unknown method 'la-lora'.*lalora"):
        get_method("la-lora")
