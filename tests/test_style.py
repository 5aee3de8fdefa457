"""One colour per method in every figure; user-registered methods get a distinct style, typos an error."""

import pytest

from lalora_lite.methods import METHODS, Method
from lalora_lite.study.style import METHOD_STYLE, OTHER_STYLE, color, style


def test_every_method_has_its_own_style_and_unknown_names_are_named():
    assert set(METHOD_STYLE) == set(METHODS)
    looks = {(s["color"], s["ls"]) for s in METHOD_STYLE.values()}
    assert len(looks) == len(METHOD_STYLE)  # no two methods look alike
    assert color("lalora") == METHOD_STYLE["lalora"]["color"] != color("dp-lora")
    with pytest.raises(ValueError, match="no style for method 'la-lora'; known: fedlora"):
        style("la-lora")


def test_a_method_registered_later_gets_the_other_style():
    METHODS["lalora-2"] = Method(
        "lalora-2", lambda t, k: frozenset({"B"}) if (k // 2) % 2 == 0 else frozenset({"A"}), smooth=True
    )
    try:
        assert style("lalora-2") == OTHER_STYLE
    finally:
        del METHODS["lalora-2"]
